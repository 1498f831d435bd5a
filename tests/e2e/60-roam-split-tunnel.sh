#!/usr/bin/env bash
# Issue 5 acceptance: with the roam agent on r1 (plain Linux mode: routes by
# rtnetlink, prefix to the LAN by radvd), the LAN client configures an address
# from the delegated /64 by RA and reaches the internet host over IPv6 through
# the tunnel while its IPv4 goes through the NAT (traceroute proves both paths).
# The agent's routes are source-specific, never duplicated, survive a restart
# unchanged, and IPv4 routing is untouched. The health check (HTTP GET from the
# router's address in the prefix, through the tunnel) reports ok.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

ours() { ip -n wgr-r1 -6 route show proto 119 | sort; }

lab_up
T0=$(agent_ms)
roam_lab_prepare
v4_before=$(ip -n wgr-r1 -4 route | sort)
mkdir -p "$LAB_DIR/www" && echo "hello from inet" >"$LAB_DIR/www/index.html"
lab_spawn www inet python3 -m http.server --bind "$LAB_INET6" --directory "$LAB_DIR/www" 8080
agent_roam_setup "option health_url 'http://[$LAB_INET6]:8080/'" "option health_interval '5'"
agent_roam_start
lab_wait_for 5 roam_delegation_is delegated || fail "prefix not delegated: $(agent_roam_status | jq -c '.interfaces[0].delegation')"
t "tunnel up, prefix delegated"
lab_wait_for 10 has_lan_slaac || fail "LAN client got no address by RA"
addr=$(lan_slaac_addr)
t "LAN client configured $addr from r1's RA"
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "LAN -> inet IPv6 failed"
ping_ok inet "$addr" || lab_exec inet ping -6 -c1 -W2 "$addr" >/dev/null || fail "inet -> LAN client IPv6 failed"

tr6=$(lab_exec lan traceroute -6 -n -q1 -w1 "$LAB_INET6" 2>&1)
echo "$tr6" | sed 's/^/           /'
echo "$tr6" | grep -q " $LAB_R2_TUN6 " || fail "IPv6 does not go through the tunnel (no hop $LAB_R2_TUN6)"
tr4=$(lab_exec lan traceroute -4 -n -q1 -w1 "$LAB_INET4" 2>&1)
echo "$tr4" | sed 's/^/           /'
echo "$tr4" | grep -q " $LAB_NAT_IN4 " || fail "IPv4 does not go through the NAT (no hop $LAB_NAT_IN4)"
t "traceroute: IPv6 via the tunnel (hop $LAB_R2_TUN6), IPv4 via the NAT (hop $LAB_NAT_IN4)"

routes=$(ours)
echo "$routes" | sed 's/^/           /'
[ "$(echo "$routes" | grep -c .)" = 2 ] || fail "expected exactly 2 agent routes"
echo "$routes" | grep -q "default from 2001:db8:100:1::/64 dev wg1" || fail "no source-specific default for the prefix"
[ "$(ip -n wgr-r1 -4 route | sort)" = "$v4_before" ] || fail "IPv4 routes changed"

health_ok() { [ "$(agent_roam_status | jq -r '.interfaces[0].health.ok')" = true ]; }
lab_wait_for 8 health_ok || fail "health check not ok: $(agent_roam_status | jq -c '.interfaces[0].health')"
detail=$(agent_roam_status | jq -r '.interfaces[0].health.detail')
echo "$detail" | grep -q "from 2001:db8:100:1::1: hello from inet" || fail "health detail: $detail"
t "health check: $detail"

pid=$(lab_pid agent-r1)
lab_stop agent-r1
[ "$(ours)" = "$routes" ] || fail "routes changed on stop"
agent_roam_start
lab_wait_for 5 roam_delegation_is delegated || fail "no delegation after restart"
sleep 1.5
[ "$(ours)" = "$routes" ] || fail "routes differ after restart: $(ours)"
grep -q "adding route" <(sed -n '/roam started/,$p' "$LAB_DIR/logs/agent-r1.log" | tail -n +2) &&
  fail "the restarted agent re-added routes"
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "IPv6 broken after agent restart"
t "agent restarted (was pid $pid): same 2 routes, nothing re-added, IPv6 still works"
echo "PASS"
