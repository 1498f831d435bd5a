#!/usr/bin/env bash
# The kernel-WireGuard VM scenarios on a router architecture, with the agent
# binary that ships to routers of it (tests/e2e/53-vm-aarch64.sh and
# 54-vm-mipsel.sh):
#
#   tests/vm/cross.sh aarch64|mipsel [SCENARIO...]
#
# 1. builds the static agent with scripts/build-targets.sh --dist target/dist
#    ARCH (the command and flags tests/e2e/60-packages.sh uses, so both share
#    cargo's cache and the binary), and prints `file` of it;
# 2. boots each scenario (default: hub-port-change, hub-restart-recovery,
#    roam-uplink-change) in the VM_ARCH=ARCH VM (tests/vm/run.sh: Debian 12
#    kernel of that architecture, kernel WireGuard, nftables NAT in the guest);
# 3. checks that the guest really was that machine (its `uname -m` and byte
#    order, printed by /init).
# Exit 0 all passed, 1 any failed, 77 skipped (printed reason: QEMU or the
# dpkg architecture missing, i.e. scripts/install-deps.sh has not run).
#
# Timing (2 cores, TCG): each scenario boots in about 10-20 s (mipsel and
# aarch64 alike) after ~5 s of initramfs packing; warm (binary and VM
# downloads cached) the whole script takes about a minute. Cold: the cross
# build takes about 2-4 min per architecture and the first VM build downloads
# and unpacks the kernel and packages (under a minute here).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ARCH=${1:-}
shift || true
SCENARIOS=("$@")
[ "${#SCENARIOS[@]}" -gt 0 ] || SCENARIOS=(hub-port-change hub-restart-recovery roam-uplink-change)

case "$ARCH" in
aarch64) QEMU_PKG=qemu-system-arm GUEST_MACHINE='aarch64 (little-endian)' ;;
mipsel) QEMU_PKG=qemu-system-mips GUEST_MACHINE='mips (little-endian)' ;;
*)
  echo "usage: tests/vm/cross.sh aarch64|mipsel [SCENARIO...]" >&2
  exit 1
  ;;
esac
export VM_ARCH=$ARCH
# shellcheck source=tests/vm/arch.sh
. "$ROOT/tests/vm/arch.sh"

if ! command -v "$QEMU" >/dev/null; then
  echo "skip: $QEMU not installed (scripts/install-deps.sh installs $QEMU_PKG)"
  exit 77
fi
# The lists are read whole first: `dpkg ... | grep -q` under pipefail fails when
# grep exits at the first match and dpkg, still writing, gets SIGPIPE (53 was
# skipped so once, with arm64 known).
known_archs=" $(echo $(dpkg --print-architecture 2>/dev/null) $(dpkg --print-foreign-architectures 2>/dev/null)) "
if [[ $known_archs != *" $DEB_ARCH "* ]]; then
  echo "skip: dpkg does not know the $DEB_ARCH architecture (scripts/install-deps.sh adds it, as root)"
  exit 77
fi

step() { printf '=== vm-%s: %s (%ss)\n' "$ARCH" "$*" "$SECONDS"; }

step "cross build"
"$ROOT/scripts/build-targets.sh" --dist "$ROOT/target/dist" "$ARCH"
BIN="$ROOT/target/dist/wgroam-$TRIPLE"
echo "agent binary: $(file -b "$BIN")"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=()
for s in "${SCENARIOS[@]}"; do
  step "scenario $s"
  rc=0
  WGROAM_BIN=$BIN "$ROOT/tests/vm/run.sh" "$s" 2>&1 | tee "$out" || rc=$?
  machine=$(sed -n 's/^vm: init at .*, machine \(.*\)$/\1/p' "$out")
  if [ "$rc" -eq 0 ] && [ "$machine" != "$GUEST_MACHINE" ]; then
    echo "vm-$ARCH: $s: the guest said machine '$machine', expected '$GUEST_MACHINE'"
    rc=1
  fi
  [ "$rc" -eq 0 ] || failed+=("$s")
done
step "done"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "vm-$ARCH: FAILED: ${failed[*]}"
  exit 1
fi
echo "vm-$ARCH: passed: ${SCENARIOS[*]} (guest machine $GUEST_MACHINE; agent $(file -b "$BIN" | cut -d, -f1-2))"
