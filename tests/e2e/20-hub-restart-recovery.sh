#!/usr/bin/env bash
# Issue 4 acceptance: the hub's WireGuard link is re-created with a stale endpoint
# (what netifd does from uci) while r1's NAT mapping moved. The kernel has lost the
# session, so r1's data cannot move the endpoint; the agent recognises the session
# index it handed out and inbound IPv6 to the LAN client works again within 1 s of
# r1's next packet. Without the agent this outage lasts until r1 re-handshakes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT


lab_up
T0=$(agent_ms)
agent_hub_setup
agent_hub_start
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "no tunnel at start"
p1=$(lab_nat_port_of_r1)
lab_wait_for 2 agent_hub_endpoint_is "$LAB_NAT_OUT4:$p1" || fail "agent did not learn r1"
t "r1 handshaked; agent follows it at :$p1"
ping_ok inet "$LAB_LAN6" || fail "inbound ping before the restart failed"

# restart_round N: re-create wg0 with the endpoint it last had ($p1) while the NAT
# moves, then time inbound IPv6 from r1's next packet. Round 1 recovers a session r1
# initiated (index from the hub's response); round 2 one the hub itself initiated in
# round 1 (index from the hub's own initiation).
restart_round() {
  local n=$1 attempt start deadline took why
  for attempt in 1 2 3 4 5; do
    lab_r2_wg_stop
    lab_wait_for 3 iface_up_is false || fail "agent did not notice wg0 going away"
    t "round $n: r2's WireGuard link is gone (restart)"
    lab_nat_rebind
    lab_r2_wg_start "$LAB_NAT_OUT4:$p1"
    lab_wait_for 3 iface_up_is true || fail "agent did not notice wg0 coming back"
    t "round $n: wg0 re-created with the stale endpoint :$p1 (as netifd applies uci)"
    [ "$(lab_r2_endpoint)" = "$LAB_NAT_OUT4:$p1" ] || fail "lab: wg0 endpoint is $(lab_r2_endpoint)"
    sleep 0.6 # one agent poll: it has nothing better to restore
    [ "$(lab_r2_endpoint)" = "$LAB_NAT_OUT4:$p1" ] || fail "endpoint moved before r1 sent anything"

    start=$(agent_ms)
    lab_exec lan ping -6 -c1 -W0.1 "$LAB_INET6" >/dev/null 2>&1 || true
    p2=$(lab_nat_port_of_r1)
    [ "$p2" != "$p1" ] && break
    t "NAT reused port $p1 (1 in 1000); again"
  done
  [ "$p2" != "$p1" ] || fail "NAT never changed the port"
  t "round $n: r1's next packet (data under the old session) leaves through NAT port :$p2"

  deadline=$((start + 5000))
  until ping_ok inet "$LAB_LAN6"; do
    [ "$(agent_ms)" -lt "$deadline" ] || fail "round $n: inbound ping still failing 5 s after r1's packet (endpoint $(lab_r2_endpoint))"
  done
  took=$(($(agent_ms) - start))
  t "round $n: inbound ping from inet to the LAN client works again, ${took} ms after r1's packet"
  # The kernel confirms the endpoint the agent set (its handshake completed
  # there): only then is it the agent's endpoint, and staged (next poll).
  why_is_index() { [ "$(agent_hub_status | jq -r '.interfaces[0].peers[0].last_change.why')" = index ]; }
  lab_wait_for 1 why_is_index || fail "round $n: last_change.why is '$(agent_hub_status | jq -r '.interfaces[0].peers[0].last_change.why')', expected index"
  [ "$(lab_r2_endpoint)" = "$LAB_NAT_OUT4:$p2" ] || fail "kernel endpoint is $(lab_r2_endpoint)"
  lab_wait_for 1 agent_hub_uci_is endpoint_port "$p2" || fail "uci not staged with :$p2"
  [ "$took" -le 1000 ] || fail "round $n: recovery took ${took} ms (> 1000 ms)"
  p1=$p2
}

restart_round 1
restart_round 2
echo "PASS"
