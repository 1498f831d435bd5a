#!/usr/bin/env bash
# Issue 3/4 acceptance: the hub agent on r2 follows r1's endpoint across a NAT port
# change within 1 s, stages it in uci (RAM) without committing, never re-creates the
# WireGuard link, and commits once on a clean stop.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT


lab_up
T0=$(agent_ms)
agent_hub_setup
agent_hub_start
t "hub agent running (pid $(agent_hub_pid))"

lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "LAN client cannot reach $LAB_INET6 through the tunnel"
port=$(lab_nat_port_of_r1)
lab_wait_for 2 agent_hub_endpoint_is "$LAB_NAT_OUT4:$port" ||
  fail "agent shows endpoint $(agent_hub_endpoint), expected $LAB_NAT_OUT4:$port"
t "agent learned r1 at $LAB_NAT_OUT4:$port"
ifindex=$(ip -n wgr-r2 -o link show wg0 | cut -d: -f1)
hs_before=$(lab_exec r2 wg show wg0 latest-handshakes | awk '{print $2}')

for attempt in 1 2 3 4 5; do
  lab_nat_rebind
  start=$(agent_ms)
  lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "ping after NAT rebind failed"
  new=$(lab_nat_port_of_r1)
  [ "$new" != "$port" ] && break
  t "NAT gave the same port again (1 in 1000); retrying"
done
[ "$new" != "$port" ] || fail "NAT never changed the port"
t "NAT rebind: r1 now appears as $LAB_NAT_OUT4:$new"
lab_wait_for 3 agent_hub_endpoint_is "$LAB_NAT_OUT4:$new" ||
  fail "agent still shows $(agent_hub_endpoint) after 3 s, expected $LAB_NAT_OUT4:$new"
took=$(($(agent_ms) - start))
t "agent status shows the new port, ${took} ms after r1 sent"
[ "$took" -le 1000 ] || fail "took ${took} ms (> 1000 ms)"

[ "$(agent_hub_uci endpoint_host)" = "$LAB_NAT_OUT4" ] || fail "uci endpoint_host is '$(agent_hub_uci endpoint_host)'"
lab_wait_for 1 agent_hub_uci_is endpoint_port "$new" || fail "uci endpoint_port is '$(agent_hub_uci endpoint_port)', expected $new"
t "uci staged network.r1.endpoint_host/port = $LAB_NAT_OUT4:$new"
cmp -s "$LAB_DIR/r2/etc/network" "$LAB_DIR/r2/network.orig" || fail "network was written to 'flash' before the commit interval"
t "/etc/config/network untouched (change staged in the save dir only)"

[ "$(ip -n wgr-r2 -o link show wg0 | cut -d: -f1)" = "$ifindex" ] || fail "wg0 was re-created"
[ "$(lab_exec r2 wg show wg0 latest-handshakes | awk '{print $2}')" = "$hs_before" ] || fail "a new handshake happened: the session was reset"
t "wg0 kept ifindex $ifindex and its session"

why=$(agent_hub_status | jq -r '.interfaces[0].peers[0].last_change.why')
[ "$why" = kernel ] || fail "last_change.why is '$why', expected kernel"

pid=$(agent_hub_pid)
kill -TERM "$pid"
lab_wait_for 5 _lab_pid_gone "$pid" || fail "agent did not stop on SIGTERM"
wait "$pid" 2>/dev/null && rc=0 || rc=$?
grep -q "option endpoint_port '$new'" "$LAB_DIR/r2/etc/network" || fail "no commit on clean stop"
[ -z "$(ls -A "$LAB_DIR/r2/save")" ] || [ ! -s "$LAB_DIR/r2/save/network" ] || fail "changes still pending after the commit"
t "SIGTERM: agent exited ($rc), endpoint committed once"
if "$(agent_bin)" status --state-dir "$LAB_DIR/r2/run" >/dev/null 2>&1; then
  fail "status claims a stopped agent is running"
fi
grep -q "endpoint $LAB_NAT_OUT4:$port -> $LAB_NAT_OUT4:$new (kernel)" "$LAB_DIR/logs/agent-r2.log" || fail "no log line for the move"
echo "PASS"
