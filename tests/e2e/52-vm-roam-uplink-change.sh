#!/usr/bin/env bash
# Issue 5 with kernel WireGuard (as on OpenWrt) in a QEMU/TCG VM: r1's WAN address
# changes behind the NAT three times; with the roam agent on r1 and the hub agent on
# r2, inbound IPv6 to the LAN client recovers each time (bound and measured times
# printed) and the roam agent reacts once per change.
# See tests/vm/scenarios/roam-uplink-change.sh. Exit 0 pass, 1 fail, 77 skip (no QEMU).
# e2e-order: late (tests/e2e/run.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "skip: qemu-system-x86_64 not installed (scripts/install-deps.sh installs qemu-system-x86)"
  exit 77
fi
if "$ROOT/tests/vm/run.sh" roam-uplink-change; then
  exit 0
fi
exit 1
