#!/usr/bin/env bash
# Issue 5 acceptance: the hub's endpoint is IPv6 and ::/0 points into the tunnel
# (a full-tunnel default route with a better metric than the uplink's). Without a
# pin WireGuard's own packets to the hub would be routed into the tunnel itself;
# the roam agent keeps a host route for the endpoint via the uplink gateway, moves
# it when the uplink (address and gateway) changes, and the handshake still reaches
# the hub.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

HUB6=2001:db8:ffff::2
pin() { ip -n wgr-r1 -6 route show "$HUB6/128" proto 119; }
pin_via() { pin | grep -q "via $1 "; }

lab_up
T0=$(agent_ms)
roam_lab_prepare
# Native IPv6 on the underlay: routed (not NATed) through wgr-nat.
for ns_if in wgr-nat:wan wgr-nat:lan wgr-r1:wan; do
  ip netns exec "${ns_if%%:*}" sysctl -q -w "net.ipv6.conf.${ns_if##*:}.disable_ipv6=0"
done
ip netns exec wgr-nat sysctl -q -w net.ipv6.conf.all.forwarding=1
# "The internet" routes the new underlay prefix back to the NAT box.
ip netns exec wgr-inet sysctl -q -w net.ipv6.conf.all.forwarding=1
ip -n wgr-nat addr add 2001:db8:ffff::3/64 dev wan nodad
ip -n wgr-nat addr add 2001:db8:64::1/64 dev lan nodad
ip -n wgr-nat addr add 2001:db8:64::fe/64 dev lan nodad
ip -n wgr-nat -6 route add default via "$LAB_INET6"
ip -n wgr-inet -6 route add 2001:db8:64::/64 via 2001:db8:ffff::3
ip -n wgr-r1 addr add 2001:db8:64::2/64 dev wan nodad
ip -n wgr-r1 -6 route add default via 2001:db8:64::1 dev wan metric 2048
lab_exec r1 ping -6 -c1 -W2 "$HUB6" >/dev/null || fail "no native IPv6 from r1 to the hub"
# The hazard: a full-tunnel default with a better metric.
ip -n wgr-r1 -6 route add default dev wg1 metric 100
lab_exec r1 wg set wg1 peer "$(lab_r2_pubkey)" endpoint "[$HUB6]:$LAB_R2_PORT"
t "r1 has native IPv6 (2001:db8:64::2 via 2001:db8:64::1) and ::/0 into wg1 with metric 100"

agent_roam_setup "list endpoint '[$HUB6]:$LAB_R2_PORT'"
sed -i "/list endpoint '$LAB_R2_WAN4:$LAB_R2_PORT'/d" "$LAB_DIR/r1/wgroam.conf"
agent_roam_start
lab_wait_for 5 pin_via 2001:db8:64::1 || fail "no pin route for $HUB6 via the uplink gateway: $(ip -n wgr-r1 -6 route)"
t "pin: $(pin)"
lab_wait_for 10 has_lan_slaac || fail "LAN client got no address"
lab_wait_for 5 lab_exec lan ping -6 -c1 -W1 "$LAB_INET6" || fail "LAN -> inet over the tunnel failed"
ep=$(lab_r2_endpoint)
[ "$ep" = "[2001:db8:64::2]:$(lab_exec r1 wg show wg1 listen-port)" ] || fail "hub sees r1 at $ep, expected its native IPv6 address"
t "handshake over IPv6: the hub sees r1 at $ep"

# Uplink change: new address and a new gateway.
start=$(agent_ms)
ip -n wgr-r1 -6 route del default via 2001:db8:64::1 dev wan metric 2048
ip -n wgr-r1 addr del 2001:db8:64::2/64 dev wan
ip -n wgr-r1 addr add 2001:db8:64::3/64 dev wan nodad
ip -n wgr-r1 -6 route add default via 2001:db8:64::fe dev wan metric 2048
lab_wait_for 5 pin_via 2001:db8:64::fe || fail "pin did not follow the new gateway: $(pin)"
lab_wait_for 5 lab_exec lan ping -6 -c1 -W1 "$LAB_INET6" || fail "no IPv6 after the uplink change"
t "uplink changed (2001:db8:64::3 via ::fe): pin moved, IPv6 back after $(($(agent_ms) - start)) ms"
[ "$(pin | grep -c .)" = 1 ] || fail "stale pin routes left: $(pin)"
lab_wait_for 3 sh -c "[ \"\$(ip netns exec wgr-r2 wg show wg0 endpoints | cut -f2)\" = '[2001:db8:64::3]:$(lab_exec r1 wg show wg1 listen-port)' ]" ||
  fail "hub did not follow r1 to its new address: $(lab_r2_endpoint)"
echo "PASS"
