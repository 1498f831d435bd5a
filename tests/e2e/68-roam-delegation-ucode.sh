#!/usr/bin/env bash
# Issue 11: test 64 with the netifd model playing OpenWrt's proposed ucode WireGuard
# handler (wireguard.uc, fixtures README s7): config snapshotted at load, `renew`
# replays the snapshot, a `network reload` that sees a changed wg1 section re-creates
# the link. Delegation and withdrawal must reach the client the same way, without a
# link re-creation.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NETIFD_MODEL_HANDLER=ucode exec "$here/64-roam-delegation-uci.sh"
