#!/usr/bin/env bash
# Issue 12 acceptance, "recover sessions the agent did not see begin": r1 runs plain
# WireGuard (persistent keepalive 25 s, no agent). Its session with the hub is
# established BEFORE the hub agent starts, so the agent never saw the handshake that
# handed out the session index. It learns the index from r1's traffic the kernel
# authenticates (transport bytes per index from r1's address matched exactly against
# r1's rx counter). Then the hub's WireGuard link is re-created with the stale endpoint
# while r1's NAT mapping moves: inbound IPv6 to the LAN client works again <= 1 s
# after r1's first packet reaches the rebuilt hub.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

indices_known() { [ "$(agent_hub_status | jq '.interfaces[0].peers[0].indices')" -ge 1 ]; }

lab_up 25
T0=$(agent_ms)
agent_hub_setup
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "no tunnel at start"
p1=$(lab_nat_port_of_r1)
t "r1 handshaked with r2 (no agent yet) from NAT port :$p1"
sleep 1
agent_hub_start
t "hub agent started after the handshake"
# r1's traffic (the LAN client talking) under the session the agent did not see begin.
lab_exec lan ping -6 -c6 -i0.3 -W1 "$LAB_INET6" >/dev/null || fail "tunnel broken"
lab_wait_for 3 indices_known || fail "agent did not learn r1's session index: $(agent_hub_status | jq -c '.interfaces[0].peers[0]')"
t "agent learnt r1's session index from authenticated traffic; endpoint $(agent_hub_endpoint)"
[ "$(agent_hub_endpoint)" = "$LAB_NAT_OUT4:$p1" ] || fail "agent endpoint is $(agent_hub_endpoint)"
grep -q 'session index .* learnt from traffic the kernel authenticated' "$LAB_DIR/logs/agent-r2.log" ||
  fail "no log line for the learnt index"

for attempt in 1 2 3 4 5; do
  lab_r2_wg_stop
  lab_wait_for 3 iface_up_is false || fail "agent did not notice wg0 going away"
  lab_nat_rebind
  lab_r2_wg_start "$LAB_NAT_OUT4:$p1"
  lab_wait_for 3 iface_up_is true || fail "agent did not notice wg0 coming back"
  t "wg0 re-created with the stale endpoint :$p1 (as netifd applies uci); NAT mapping flushed"
  sleep 0.6
  start=$(agent_ms)
  lab_exec lan ping -6 -c1 -W0.1 "$LAB_INET6" >/dev/null 2>&1 || true
  p2=$(lab_nat_port_of_r1)
  [ "$p2" != "$p1" ] && break
  t "NAT reused port $p1; again"
done
[ "$p2" != "$p1" ] || fail "NAT never changed the port"
t "r1's next packet (data under the old session) leaves through NAT port :$p2"
deadline=$((start + 5000))
until ping_ok inet "$LAB_LAN6"; do
  [ "$(agent_ms)" -lt "$deadline" ] || fail "inbound ping still failing 5 s after r1's packet (endpoint $(lab_r2_endpoint))"
done
took=$(($(agent_ms) - start))
t "inbound ping from inet to the LAN client works again, ${took} ms after r1's packet"
why_is_index() { [ "$(agent_hub_status | jq -r '.interfaces[0].peers[0].last_change.why')" = index ]; }
lab_wait_for 1 why_is_index || fail "last_change is $(agent_hub_status | jq -c '.interfaces[0].peers[0].last_change')"
lab_wait_for 1 agent_hub_uci_is endpoint_port "$p2" || fail "uci not staged with :$p2"
[ "$took" -le 1000 ] || fail "recovery took ${took} ms (> 1000 ms)"
echo "PASS"
