#!/usr/bin/env bash
# Installs everything wgroam's build, lab and VM tests need on a fresh Debian 12
# (as root). Idempotent: a second run only checks.
set -euo pipefail

# Fuzzing tools (cargo-fuzz, pinned), cached in ~/.cargo/bin. Only
# scripts/fuzz.sh asks for them (`install-deps.sh --fuzz-tools`): building
# cargo-fuzz takes minutes and the normal suite does not need it.
CARGO_FUZZ_VERSION=0.13.2
install_fuzz_tools() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if [ "$(cargo fuzz --version 2>/dev/null)" = "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "install-deps: cargo-fuzz $CARGO_FUZZ_VERSION ok"
    return 0
  fi
  echo "install-deps: installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install, a few minutes)"
  cargo install --locked --quiet "cargo-fuzz@$CARGO_FUZZ_VERSION"
}
if [ "${1:-}" = --fuzz-tools ]; then
  install_fuzz_tools
  exit 0
fi

PKGS=(
  # build
  build-essential cmake pkg-config libjson-c-dev
  # lab: namespaces, userspace WireGuard, NAT, capture
  iproute2 nftables conntrack wireguard-go wireguard-tools tcpdump
  iputils-ping traceroute ndisc6 radvd strace procps psmisc jq python3 bc
  # kernel-WireGuard VM (x86_64; aarch64 and mipsel: tests/vm, VM_ARCH)
  qemu-system-x86 qemu-system-arm qemu-system-mips busybox-static cpio xz-utils file
  # router targets: unit tests under qemu-user, zig from PyPI in a venv
  qemu-user-static python3-venv
  # luci-app-wgroam: views driven in a headless browser (tests/luci), feed
  # signatures (usign-compatible signify)
  chromium signify-openbsd
  # benchmarks: instructions per captured packet (bench/capture-instr.sh)
  valgrind
)

# The aarch64/mipsel VMs take their kernel and userland (busybox-static, ip,
# wg, nft and their libraries) from Debian's arm64/mipsel packages: apt must
# know those architectures (tests/vm/build.sh downloads, never installs them).
foreign_added=0
for a in arm64 mipsel; do
  # Read whole first: `dpkg ... | grep -q` under pipefail fails when dpkg gets SIGPIPE.
  foreign=" $(echo $(dpkg --print-foreign-architectures)) "
  if [[ $foreign != *" $a "* ]]; then
    echo "install-deps: dpkg --add-architecture $a"
    dpkg --add-architecture "$a"
    foreign_added=1
  fi
done

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$foreign_added" = 1 ] && [ "${#missing[@]}" -eq 0 ]; then
  apt-get update -q >/dev/null
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# radvd is driven by wgroam/tests, never as a system service.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now radvd >/dev/null 2>&1 || true
fi

# Static musl target: the VM boots the same static binary that ships to routers.
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi
# Router targets: rust-src (-Zbuild-std), rustup's aarch64 musl std, and
# zig + cargo-zigbuild (pinned, from PyPI) in a venv under ~/.cache/wgroam.
bash "$(dirname "$0")/build-targets.sh" --setup
# The LuCI tests' browser driver (playwright-core, pinned in
# tests/luci/package-lock.json; it drives Debian's chromium, downloads no browser).
command -v node >/dev/null || {
  echo "install-deps: node missing; installing Debian's nodejs and npm"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm >/dev/null
}
luci_tests=$(cd "$(dirname "$0")/../tests/luci" && pwd)
want=$(sed -n 's/^ *"playwright-core": "\(.*\)"$/\1/p' "$luci_tests/package.json")
have=
if [ -f "$luci_tests/node_modules/playwright-core/package.json" ]; then
  have=$(sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$luci_tests/node_modules/playwright-core/package.json" | head -n1)
fi
# uqr: LuCI's QR encoder (vendored in LuCI from this npm package), served
# to the views by the stand-in (tests/luci/status-page.js).
if [ "$have" != "$want" ] || [ ! -f "$luci_tests/node_modules/uqr/dist/index.cjs" ]; then
  echo "install-deps: npm ci in tests/luci (playwright-core $want, uqr)"
  (cd "$luci_tests" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --quiet >/dev/null)
fi
echo "install-deps: ok"
