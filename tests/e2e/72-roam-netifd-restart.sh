#!/usr/bin/env bash
# Issue 11 ("delegated means delegated") across `/etc/init.d/network restart` on r1, as
# the real netifd/odhcpd were observed (/work/realdaemons/FINDINGS.md, "netifd
# restarted"): the new netifd flushes every IPv6 address and route on its devices (the
# agent's `default from` routes too), forgets the dynamic interface, resets lan's IPv6
# MTU ~1 s after its start, and odhcpd stays silent until it is reloaded.
#   - the agent puts its routes and the dynamic interface back within 3 s
#   - it is never `delegated` while odhcpd announces nothing (`dhcp ipv6ra` empty)
#   - either it reloads odhcpd itself, or its problem names odhcpd (then the user runs
#     `/etc/init.d/odhcpd reload`); then the client has the prefix and its default
#     route again, and the RAs carry wg1's MTU (not the 1500 netifd's reset left behind)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

export NETIFD_MODEL_HANDLER=${NETIFD_MODEL_HANDLER:-sh}
PREFIX=2001:db8:100:1::/64
r1_lan_ll() { ip -n wgr-r1 -6 -o addr show dev lan scope link | awk '{ sub(/\/.*/, "", $4); print $4; exit }'; }
client_gw() { ip -n wgr-lan -6 route show default | awk '$2 == "via" { print $3; exit }'; }
client_has_gw() { [ -n "$(client_gw)" ]; }
routes_back() { ip -n wgr-r1 -6 route show | grep -q "^default from $PREFIX"; }
dyn_back() { r1_ubus call network.interface.wgroam_wg1 status >/dev/null 2>&1; }
problem() { agent_roam_status | jq -r '.interfaces[0].delegation.problem // ""'; }
problem_has() { problem | grep -qi -- "$1"; }
state() { agent_roam_status | jq -r '.interfaces[0].delegation.state'; }
deleg() { agent_roam_status | jq -c '.interfaces[0].delegation'; }
last_live_ra_mtu() {
  ra_json ra | jq -s -r --arg p "$PREFIX" '[.[] | select(any(.prefixes[]; .prefix == $p and .valid > 0))] | last | .mtu // empty'
}
ra_mtu_is() { [ "$(last_live_ra_mtu)" = "$1" ]; }

lab_up
T0=$(agent_ms)
roam_lab_prepare
agent_roam_setup_uci "option heartbeat_interval '1'" "option grace '2'"
WG_MTU=$(lab_exec r1 cat /sys/class/net/wg1/mtu)
lab_capture_start ra lan eth0 -vvv 'icmp6 and ip6[40] == 134'
agent_roam_start_uci
lab_wait_for 15 roam_delegation_is delegated || fail "not delegated: $(deleg)"
lab_wait_for 5 client_has_gw || fail "client has no default route via r1"
t "delegated; client default via $(client_gw)"

ipv6ra_has_prefix() {
  r1_ubus call dhcp ipv6ra 2>/dev/null | jq -e '[.interfaces[]?[] | select(.stale == false and (.prefix | startswith("2001:db8:100:1:")))] | length > 0' >/dev/null
}
# Polls until delegated (or a problem naming odhcpd); fails if `delegated` is reported
# while odhcpd's table lacks the prefix.
settle() {
  local until=$(($(agent_ms) + $1 * 1000)) st
  while [ "$(agent_ms)" -lt "$until" ]; do
    st=$(state)
    if [ "$st" = delegated ]; then
      ipv6ra_has_prefix || fail "status says delegated while odhcpd announces nothing: $(r1_ubus call dhcp ipv6ra | jq -c .)"
      echo delegated
      return 0
    fi
    if problem_has odhcpd; then echo problem; return 0; fi
    sleep 0.1
  done
  echo timeout
}

r1_netifd_restart
t "r1: network restart (netifd flushed IPv6 addresses and routes, forgot wgroam_wg1)"
r1_model_events netifd-restarted | grep -q . || fail "the model did not restart netifd"
lab_wait_for 3 routes_back || fail "the agent's default-from routes are not back 3 s after the restart"
t "agent's routes back"
lab_wait_for 3 dyn_back || fail "wgroam_wg1 not added again 3 s after the restart"
t "wgroam_wg1 back"
case $(settle 10) in
delegated) t "agent reloaded odhcpd itself: delegated $(deleg)" ;;
problem)
  t "problem: $(problem)"
  [ "$(state)" != delegated ] || fail "status says delegated with a problem"
  r1_odhcpd_reload
  t "user: /etc/init.d/odhcpd reload"
  [ "$(settle 8)" = delegated ] || fail "not delegated after the odhcpd reload: $(deleg)"
  ;;
*) fail "10 s after the restart neither delegated nor a problem naming odhcpd: $(deleg)" ;;
esac
[ -z "$(problem)" ] || fail "problem still shown: $(problem)"
lab_wait_for 5 client_has_gw || fail "client has no default route via r1 after the reload"
[ "$(client_gw)" = "$(r1_lan_ll)" ] || fail "client's default route is not via r1's LAN address"
lab_wait_for 5 ra_mtu_is "$WG_MTU" || fail "RAs announce MTU $(last_live_ra_mtu), wg1's is $WG_MTU (netifd's MTU reset after its start)"
agent_roam_status | jq -e --argjson m "$WG_MTU" '.interfaces[0].delegation.mtu == $m' >/dev/null ||
  fail "status mtu is not $WG_MTU: $(deleg)"
t "delegated again; client default via r1; RA MTU $WG_MTU"
echo "PASS"
