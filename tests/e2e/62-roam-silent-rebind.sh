#!/usr/bin/env bash
# Issue 5 acceptance: the NAT silently forgets r1's mapping (conntrack flush) while
# traffic is inbound only. Plain WireGuard never recovers without keepalive (the
# hub keeps sending to a dead port); with the roam agent's heartbeat (interval 2 s)
# inbound IPv6 recovers within heartbeat interval + 1 s.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

HB=2

lab_up
T0=$(agent_ms)
roam_lab_prepare
agent_roam_setup "option heartbeat_interval '$HB'"
agent_roam_start
lab_wait_for 10 has_lan_slaac || fail "LAN client got no address"
addr=$(lan_slaac_addr)
lab_wait_for 5 ping_ok inet "$addr" || fail "inbound IPv6 does not work at start"
t "roam agent up (heartbeat ${HB} s); inet reaches $addr"

for round in 1 2 3; do
  old=$(lab_nat_port_of_r1)
  lab_nat_rebind
  start=$(agent_ms)
  until ping_ok inet "$addr"; do
    [ $(($(agent_ms) - start)) -lt 20000 ] || fail "round $round: inbound IPv6 still dead after 20 s"
  done
  took=$(($(agent_ms) - start))
  t "round $round: NAT forgot :$old; inbound-only traffic recovered after ${took} ms via :$(lab_nat_port_of_r1)"
  [ "$took" -le $(((HB + 1) * 1000)) ] || fail "round $round took ${took} ms (> $((HB + 1)) s)"
  sleep 0.5
done
echo "PASS"
