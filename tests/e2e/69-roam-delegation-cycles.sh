#!/usr/bin/env bash
# Issue 11 (flash and RAM): 20 delegate/withdraw cycles (the tunnel blocked past
# `grace`, then unblocked) under the ucode handler semantics of the netifd model.
# Each cycle the LAN client must really lose and regain the prefix (default route via
# r1 gone / back). Afterwards uci's save directory holds no entry from delegation,
# /etc/config/network is untouched, netifd never re-created the WireGuard link and
# wg1's ifindex is unchanged.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

export NETIFD_MODEL_HANDLER=${NETIFD_MODEL_HANDLER:-ucode}
CYCLES=${CYCLES:-20}
GRACE=1
HB=1

r1_lan_ll() { ip -n wgr-r1 -6 -o addr show dev lan scope link | awk '{ sub(/\/.*/, "", $4); print $4; exit }'; }
client_gw() { ip -n wgr-lan -6 route show default | awk '$2 == "via" { print $3; exit }'; }
client_has_gw() { [ "$(client_gw)" = "$R1_LL" ]; }
client_no_gw() { [ -z "$(client_gw)" ]; }

lab_up
T0=$(agent_ms)
roam_lab_prepare
agent_roam_setup_uci "option heartbeat_interval '$HB'" "option grace '$GRACE'"
cp "$LAB_DIR/r1/etc/network" "$LAB_DIR/r1/network.orig"
R1_LL=$(r1_lan_ll)
WG_IFINDEX=$(lab_exec r1 cat /sys/class/net/wg1/ifindex)
agent_roam_start_uci
lab_wait_for 15 roam_delegation_is delegated || fail "not delegated"
lab_wait_for 5 client_has_gw || fail "client has no default route via r1"
t "delegated; client uses r1"
for i in $(seq 1 "$CYCLES"); do
  nat_block_wireguard
  lab_wait_for $((GRACE + 15)) roam_delegation_is withdrawn || fail "cycle $i: not withdrawn"
  lab_wait_for 3 client_no_gw || fail "cycle $i: client keeps its default route via r1 after the withdrawal"
  nat_unblock_wireguard
  lab_wait_for 25 roam_delegation_is delegated || fail "cycle $i: not delegated again"
  lab_wait_for 5 client_has_gw || fail "cycle $i: client has no default route via r1 after the restore"
  ch=$(r1_uci changes)
  [ -z "$ch" ] || fail "cycle $i: uci save dir holds: $ch"
  t "cycle $i: withdrawn and delegated again; uci save dir empty"
done
cmp -s "$LAB_DIR/r1/etc/network" "$LAB_DIR/r1/network.orig" || fail "/etc/config/network was written (flash)"
[ -z "$(ls -A "$LAB_DIR/r1/save")" ] || [ -z "$(cat "$LAB_DIR/r1/save"/* 2>/dev/null)" ] ||
  fail "save dir not empty: $(head -c 500 "$LAB_DIR/r1/save"/*)"
[ "$(lab_exec r1 cat /sys/class/net/wg1/ifindex)" = "$WG_IFINDEX" ] || fail "wg1 re-created (ifindex)"
ev=$(r1_model_events link-recreated)
[ -z "$ev" ] || fail "netifd re-created the WireGuard link: $ev"
t "$CYCLES cycles: save dir empty, config untouched, wg1 kept (ifindex $WG_IFINDEX), no link re-creation"
echo "PASS"
