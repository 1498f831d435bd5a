#!/usr/bin/env bash
# Kernel WireGuard on aarch64 in a QEMU/TCG VM (qemu-system-aarch64 -M virt
# -cpu cortex-a53 with Debian 12's arm64 kernel), running the cross-built static agent that
# ships to aarch64_cortex-a53 routers: the VM scenarios hub-port-change,
# hub-restart-recovery (NAT, passive capture) and roam-uplink-change. The log
# shows the binary's `file` and the guest's `uname -m`. About a minute warm;
# cold the cross build adds ~4 min (give E2E_TIMEOUT=900). See tests/vm/cross.sh.
# Exit 0 pass, 1 fail, 77 skip (QEMU or the dpkg architecture missing).
# e2e-order: late (tests/e2e/run.sh)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
exec "$ROOT/tests/vm/cross.sh" aarch64
