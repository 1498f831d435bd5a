#!/usr/bin/env bash
# Issue 11 ("delegated means delegated"): when netifd/odhcpd cannot take the prefix,
# status shows a `problem` naming cause and fix, never `delegated`, and the agent logs
# it once (not per poll). Then the user fixes it and the client gets the prefix.
#   A: lan has no ip6assign (netifd assigns nothing; the client gets no prefix);
#      fixed with uci set + commit + `ubus call network reload`.
#   B: odhcpd stops (ubus object `dhcp` gone); fixed by starting it again.
#   C: netifd deletes the dynamic interface (it does when the tunnel device goes away,
#      fixtures s9): the agent notices and adds it again; the client gets it back.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

export NETIFD_MODEL_HANDLER=${NETIFD_MODEL_HANDLER:-sh}
PREFIX=2001:db8:100:1::/64
problem() { agent_roam_status | jq -r '.interfaces[0].delegation.problem // ""'; }
state() { agent_roam_status | jq -r '.interfaces[0].delegation.state'; }
problem_has() { problem | grep -qi -- "$1"; }
no_problem() { [ -z "$(problem)" ]; }
client_gw() { ip -n wgr-lan -6 route show default | awk '$2 == "via" { print $3; exit }'; }
never_delegated_for() {
  local until=$(($(agent_ms) + $1 * 1000))
  while [ "$(agent_ms)" -lt "$until" ]; do
    [ "$(state)" != delegated ] || fail "status says delegated while: $(problem)"
    sleep 0.2
  done
}

lab_up
T0=$(agent_ms)
roam_lab_prepare
R1_LAN_IP6ASSIGN=none agent_roam_setup_uci "option heartbeat_interval '1'" "option grace '2'"
agent_roam_start_uci

# --- A: no ip6assign on lan ------------------------------------------------------
lab_wait_for 10 problem_has ip6assign || fail "no problem naming ip6assign: $(agent_roam_status | jq -c '.interfaces[0].delegation')"
t "problem: $(problem)"
problem_has "network.lan" || fail "the problem does not name network.lan: $(problem)"
never_delegated_for 5
[ -z "$(lan_slaac_addr)" ] || fail "client has an address in the prefix: $(lan_slaac_addr)"
[ -z "$(client_gw)" ] || fail "client has a default route via r1"
n=$(agent_roam_log | grep -c ip6assign || true)
[ "$n" = 1 ] || fail "expected one log line about ip6assign, got $n: $(agent_roam_log | grep ip6assign)"
t "state $(state), client got nothing, one log line: $(agent_roam_log | grep ip6assign)"
r1_uci set network.lan.ip6assign=64
r1_uci commit network
r1_ubus call network reload
t "user: uci set network.lan.ip6assign=64; uci commit network; ubus call network reload"
lab_wait_for 15 roam_delegation_is delegated || fail "not delegated after the fix: $(problem)"
no_problem || fail "problem still shown: $(problem)"
lab_wait_for 5 has_lan_slaac || fail "client got no address after the fix"
t "delegated, no problem; client $(lan_slaac_addr)"

# --- B: odhcpd stops ---------------------------------------------------------------
r1_odhcpd_stop
t "odhcpd stopped"
lab_wait_for 15 problem_has odhcpd || fail "no problem naming odhcpd: $(agent_roam_status | jq -c '.interfaces[0].delegation')"
[ "$(state)" != delegated ] || fail "status says delegated while odhcpd is not running"
t "problem: $(problem); state $(state)"
never_delegated_for 3
n=$(agent_roam_log | grep -ci "odhcpd is not running" || true)
[ "$n" = 1 ] || fail "expected one log line saying odhcpd is not running, got $n: $(agent_roam_log | grep -i odhcpd)"
r1_odhcpd_start
t "odhcpd started"
lab_wait_for 15 roam_delegation_is delegated || fail "not delegated after odhcpd is back: $(problem)"
no_problem || fail "problem still shown: $(problem)"
t "delegated again, no problem"

# --- C: netifd drops the dynamic interface (as when wg1's device goes away) --------
client_has_gw() { [ -n "$(client_gw)" ]; }
lab_wait_for 5 client_has_gw || fail "client has no default route via r1 before C"
r1_ubus call network.interface.wgroam_wg1 remove
t "netifd: wgroam_wg1 deleted behind the agent's back"
lab_wait_for 5 sh -c "! '$LAB_DIR/r1/bin/ubus' call network.interface.wgroam_wg1 status >/dev/null 2>&1" ||
  fail "the model did not delete it"
lab_wait_for 12 r1_ubus call network.interface.wgroam_wg1 status || fail "the agent did not add the interface again"
t "agent added wgroam_wg1 again"
lab_wait_for 5 client_has_gw || fail "client did not get its default route via r1 back"
lab_wait_for 5 roam_delegation_is delegated || fail "not delegated after the re-add"
t "client has the prefix and its default route again"
echo "PASS"
