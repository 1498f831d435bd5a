#!/usr/bin/env bash
# e2e: the router packages. Builds the static binaries for x86_64 and
# mipsel_24kc (scripts/build-targets.sh, size flags as shipped), checks that
# the shipped /etc/config/wgroam is what the agent's own parser expects,
# packages both (.ipk and .apk, scripts/package.sh), checks the packages
# (tests/pkg/check-packages.sh, tests/pkg/check-luci.sh for luci-app-wgroam,
# tests/pkg/check-feed.sh for the signed feed index) and that broken ones are caught
# (tests/pkg/selftest.sh), and runs the library's unit tests for mipsel under
# qemu-user (little-endian MIPS: the netlink tests run there too).
#
# Needs what scripts/install-deps.sh installs (qemu-user-static, busybox,
# strace, zig + cargo-zigbuild, rust-src). Takes ~8 min with warm caches
# (target/, ~/.cache/zig); cold, the two builds take longer: give it
# E2E_TIMEOUT=1200 (tests/e2e/run.sh).
# e2e-order: late (tests/e2e/run.sh)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

for tool in qemu-mipsel-static busybox strace python3 readelf unshare signify-openbsd; do
  command -v "$tool" >/dev/null || {
    echo "60-packages: $tool missing; run scripts/install-deps.sh"
    exit 1
  }
done

step() { printf '\n=== 60-packages: %s (%ss)\n' "$*" "$SECONDS"; }

dist=$root/target/dist
out=$root/target/pkg
version=$(scripts/version.sh --check)

x86=$dist/wgroam-x86_64-unknown-linux-musl
mipsel=$dist/wgroam-mipsel-unknown-linux-musl
# scripts/test.sh exports the static x86_64 binary it built as WGROAM_BIN:
# package that one instead of building x86_64 again (the size measures do
# not matter to the package checks).
if [ -n "${WGROAM_BIN:-}" ] && [ -x "$WGROAM_BIN" ] &&
  ! readelf -lW "$WGROAM_BIN" | grep -q INTERP &&
  readelf -h "$WGROAM_BIN" | grep -q 'X86-64'; then
  step "build mipsel (x86_64: $WGROAM_BIN)"
  x86=$WGROAM_BIN
  scripts/build-targets.sh --dist "$dist" mipsel
else
  step "build x86_64 and mipsel"
  scripts/build-targets.sh --dist "$dist" x86_64 mipsel
fi

step "the binaries run (mipsel under qemu) and accept the shipped config"
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
for run in "$x86" "qemu-mipsel-static $mipsel"; do
  # shellcheck disable=SC2086 # "$run" is a command with its runner
  got=$($run --version)
  [ "$got" = "wgroam $version" ] || {
    echo "60-packages: '$run --version' said '$got'"
    exit 1
  }
  rc=0
  # shellcheck disable=SC2086
  msg=$($run check --config openwrt/files/wgroam.config 2>&1) || rc=$?
  if [ "$rc" != 2 ] || ! grep -q "role: missing" <<<"$msg"; then
    echo "60-packages: the shipped config without a role must be refused naming the role (exit $rc): $msg"
    exit 1
  fi
  for role in hub roam; do
    sed "s/^\t#option role '$role'$/\toption role '$role'/" openwrt/files/wgroam.config >"$conf"
    rc=0
    # shellcheck disable=SC2086
    msg=$($run check --config "$conf" 2>&1) || rc=$?
    # 0: fine; 1: this host lacks what a router has (wg0, uci). 2: bad config.
    if [ "$rc" = 2 ]; then
      echo "60-packages: the shipped config with role '$role' is not valid: $msg"
      exit 1
    fi
  done
done
echo "shipped config: refused without a role, valid with 'hub' and with 'roam'"

step "package (one directory per architecture: apk names carry no arch)"
rm -rf "$out"
# A throw-away feed key (a real feed uses its maintainer's): signs Packages.
keys=$(mktemp -d)
signify-openbsd -G -n -c "wgroam test feed" -p "$keys/feed.pub" -s "$keys/feed.sec"
export WGROAM_FEED_KEY=$keys/feed.sec
scripts/package.sh "$x86" x86_64 "$version" "$out/x86_64"
scripts/package.sh "$mipsel" mipsel_24kc "$version" "$out/mipsel_24kc"
unset WGROAM_FEED_KEY

step "check the packages"
tests/pkg/check-packages.sh "$out/x86_64/wgroam_${version}_x86_64.ipk" "$out/x86_64/wgroam-$version.apk" "$x86"
tests/pkg/check-packages.sh "$out/mipsel_24kc/wgroam_${version}_mipsel_24kc.ipk" "$out/mipsel_24kc/wgroam-$version.apk" "$mipsel"
tests/pkg/check-feed.sh "$out/x86_64" "$keys/feed.pub"
tests/pkg/check-feed.sh "$out/mipsel_24kc" "$keys/feed.pub"
rm -rf "$keys"
tests/pkg/check-luci.sh "$out/x86_64/luci-app-wgroam_${version}_all.ipk" "$out/x86_64/luci-app-wgroam-$version.apk"
cmp "$out/x86_64/luci-app-wgroam_${version}_all.ipk" "$out/mipsel_24kc/luci-app-wgroam_${version}_all.ipk"
echo "luci-app-wgroam (arch all) is the same file from both runs"
tests/pkg/selftest.sh "$out/mipsel_24kc/wgroam_${version}_mipsel_24kc.ipk" "$out/mipsel_24kc/wgroam-$version.apk"

step "unit tests for mipsel under qemu-mipsel-static"
scripts/build-targets.sh --test mipsel

step "done"
ls -lR "$out"
