#!/usr/bin/env bash
# Issue 5 acceptance: r1's uplink changes (new WAN address behind the NAT, so a new
# NAT mapping). With the roam agent on r1 and the hub agent on r2, inbound IPv6 from
# the internet host to the LAN client recovers within 1 s of the change. The lab's
# uplink change is --raw: wireguard-go stays on its cached source address unless the
# agent re-sets the endpoint, as kernel WireGuard would need after a stale source.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT


roam_lab_start_both
addr=$ADDR
t "hub and roam agents up; inet reaches the LAN client $addr"

for round in 1 2 3; do
  old=$(lab_nat_port_of_r1)
  start=$(agent_ms)
  wan=$(lab_uplink_change --raw)
  until ping_ok inet "$addr"; do
    [ $(($(agent_ms) - start)) -lt 10000 ] || fail "round $round: no inbound IPv6 10 s after the uplink change"
  done
  took=$(($(agent_ms) - start))
  new=$(lab_nat_port_of_r1)
  t "round $round: r1 WAN now $wan (NAT :$old -> :$new); inbound IPv6 back after ${took} ms"
  [ "$took" -le 1000 ] || fail "round $round took ${took} ms (> 1000 ms)"
done
# What OpenWrt's iface hotplug does on every uplink event: a nudge, not a kill.
kill -USR1 "$(lab_pid agent-r1)"
sleep 0.3
kill -0 "$(lab_pid agent-r1)" 2>/dev/null || fail "SIGUSR1 killed the roam agent"
ping_ok inet "$addr" || lab_wait_for 3 ping_ok inet "$addr" || fail "IPv6 broken after a nudge"
reactions=$(agent_roam_status | jq '.interfaces[0].reactions')
[ "$reactions" -ge 4 ] || fail "only $reactions uplink reactions recorded"
grep -q "uplink reaction" "$LAB_DIR/logs/agent-r1.log" || fail "no uplink reaction logged"
echo "PASS"
