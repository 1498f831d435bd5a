#!/usr/bin/env bash
# Issue 11 (hub) acceptance: a configuration push is not a roam. After the hub agent
# learnt r1's new NAT port, netifd-style pushes put the stale endpoint back into
# WireGuard — `wg set` and `wg syncconf` with a live session, and `wg syncconf` into a
# re-created link (no session). Each time the agent restores the learned endpoint
# within one poll, uci keeps the learned value (nothing staged from the push), and
# inbound IPv6 to the LAN client keeps working (longest gap <= 1 s). A netifd-style
# renew fed the STAGED uci values (what `uci get` returns with the save dir) changes
# nothing at all: the staged endpoint survives it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT


# syncconf ENDPOINT: what netifd's proto handler does on renew: the whole wg0
# configuration from uci, peer endpoint included, via `wg syncconf`.
syncconf() {
  cat >"$LAB_DIR/wg0.conf" <<EOF2
[Interface]
PrivateKey = $(cat "$LAB_DIR/keys/r2.key")
ListenPort = $LAB_R2_PORT

[Peer]
PublicKey = $(lab_r1_pubkey)
AllowedIPs = $LAB_R1_TUN6/128, 2001:db8:100:1::/64
Endpoint = $1
EOF2
  ip netns exec wgr-r2 wg syncconf wg0 "$LAB_DIR/wg0.conf"
}

# pinger_start / pinger_gap: inbound pings inet -> LAN client every 50 ms; the longest
# time between two answered ones, in ms.
pinger_start() {
  lab_spawn pinger inet ping -6 -D -i 0.05 -W 1 "$LAB_LAN6"
}
pinger_gap() {
  lab_stop pinger
  awk -F'[][]' '/bytes from/ { t = $2 * 1000; if (p && t - p > g) g = t - p; p = t } END { printf "%d", g }' \
    "$LAB_DIR/logs/pinger.log"
}

lab_up
T0=$(agent_ms)
agent_hub_setup
agent_hub_start
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "no tunnel"
p1=$(lab_nat_port_of_r1)
lab_wait_for 2 agent_hub_endpoint_is "$LAB_NAT_OUT4:$p1" || fail "agent did not learn r1"
p2=$(r1_new_nat_port "$p1") || fail "r1 got no new NAT port"
learned="$LAB_NAT_OUT4:$p2"
stale="$LAB_NAT_OUT4:$p1"
lab_wait_for 2 agent_hub_endpoint_is "$learned" || fail "agent did not follow r1 to :$p2"
lab_wait_for 1 agent_hub_uci_is endpoint_port "$p2" || fail "uci not staged with :$p2"
t "agent learned r1 at $learned (staged); the committed/stale value is $stale"
poll=500

# push NAME CMD...: runs the push, then the learned endpoint must be back within one
# poll (+ 200 ms for this script's own reads), uci unchanged.
push() {
  local name=$1 start took
  shift
  start=$(agent_ms)
  "$@"
  lab_wait_for 2 kernel_is "$learned" || fail "$name: kernel endpoint stays $(lab_r2_endpoint)"
  took=$(($(agent_ms) - start))
  t "$name: learned endpoint back in the kernel ${took} ms after the push"
  [ "$took" -le $((poll + 200)) ] || fail "$name: ${took} ms (> one poll)"
  [ "$(agent_hub_uci endpoint_port)" = "$p2" ] || fail "$name: uci now holds $(agent_hub_uci endpoint_port)"
  [ "$(agent_hub_endpoint)" = "$learned" ] || fail "$name: agent adopted $(agent_hub_endpoint)"
}

from=$(wc -l <"$LAB_DIR/logs/agent-r2.log")
pinger_start
sleep 0.5
push "live session, wg set" ip netns exec wgr-r2 wg set wg0 peer "$(lab_r1_pubkey)" endpoint "$stale"
sleep 0.5
push "live session, wg syncconf" syncconf "$stale"
sleep 0.5
gap=$(pinger_gap)
t "inbound pings during both pushes: longest gap ${gap} ms"
[ "$gap" -le 1000 ] || fail "inbound gap ${gap} ms (> 1 s)"
grep -q "(restored: changed without traffic from the peer)" "$LAB_DIR/logs/agent-r2.log" || fail "no restore logged"
! tail -n +"$((from + 1))" "$LAB_DIR/logs/agent-r2.log" | grep -q -- "-> $stale (" || fail "the push was logged as a move"

# No session: the link is re-created and netifd's syncconf pushes the stale value.
lab_r2_wg_stop
lab_wait_for 3 iface_up_is false || fail "agent did not notice wg0 going away"
lab_r2_wg_start
lab_wait_for 3 iface_up_is true || fail "agent did not notice wg0 coming back"
push "re-created link, wg syncconf" syncconf "$stale"
start=$(agent_ms)
until ping_ok inet "$LAB_LAN6"; do
  [ $(($(agent_ms) - start)) -lt 3000 ] || fail "no inbound IPv6 3 s after the restore"
done
t "inbound IPv6 works $(($(agent_ms) - start)) ms after the restore (the hub handshakes with the learned endpoint)"

# netifd renew with the agent's staging in place: syncconf is fed what uci returns.
restored=$(grep -c '(restored' "$LAB_DIR/logs/agent-r2.log" || true)
lab_wait_for 2 agent_hub_endpoint_is "$learned" || fail "agent lost r1"
staged_ep="$(agent_hub_uci endpoint_host):$(agent_hub_uci endpoint_port)"
[ "$staged_ep" = "$learned" ] || fail "uci (with the save dir) returns $staged_ep"
pinger_start
sleep 0.3
syncconf "$staged_ep"
sleep 1
gap=$(pinger_gap)
[ "$(lab_r2_endpoint)" = "$learned" ] || fail "renew with the staged value moved the endpoint to $(lab_r2_endpoint)"
[ "$(grep -c '(restored' "$LAB_DIR/logs/agent-r2.log" || true)" = "$restored" ] || fail "the agent had to restore after a staged renew"
[ "$gap" -le 200 ] || fail "inbound gap ${gap} ms during a staged renew"
t "renew fed the staged uci values: endpoint unchanged, nothing restored, longest inbound gap ${gap} ms"
echo "PASS"
