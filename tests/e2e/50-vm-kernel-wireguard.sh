#!/usr/bin/env bash
# Kernel WireGuard (as on OpenWrt) in a QEMU/TCG VM: the hub follows a roaming
# peer's port change, first in the kernel's own view, then in wgroam's status.
# See tests/vm/. Exit 0 pass, 1 fail, 77 skip (no QEMU).
# e2e-order: late (tests/e2e/run.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "skip: qemu-system-x86_64 not installed (scripts/install-deps.sh installs qemu-system-x86)"
  exit 77
fi
if "$ROOT/tests/vm/run.sh" hub-port-change; then
  exit 0
fi
exit 1
