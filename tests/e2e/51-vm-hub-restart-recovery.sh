#!/usr/bin/env bash
# Issue 4 with kernel WireGuard (as on OpenWrt) in a QEMU/TCG VM: r2's wg0 is
# re-created with the stale endpoint while r1's NAT mapping moved; the hub agent
# recognises r1's session index and inbound IPv6 to the LAN client works again
# (bound and measured time printed). See tests/vm/scenarios/hub-restart-recovery.sh.
# Exit 0 pass, 1 fail, 77 skip (no QEMU).
# e2e-order: late (tests/e2e/run.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "skip: qemu-system-x86_64 not installed (scripts/install-deps.sh installs qemu-system-x86)"
  exit 77
fi
if "$ROOT/tests/vm/run.sh" hub-restart-recovery; then
  exit 0
fi
exit 1
