#!/usr/bin/env bash
# Issue 11 (RA MTU): `option announce_mtu '0'` turns announcing the tunnel's MTU off.
# netifd (model) still lowers lan's IPv6 MTU to wg1's when it assigns the prefix; the
# agent puts it back, so the RA the client receives carries the LAN's own MTU (1500)
# and the client's IPv6 MTU stays 1500. The control (64) shows 1420 with the default.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

export NETIFD_MODEL_HANDLER=${NETIFD_MODEL_HANDLER:-sh}
PREFIX=2001:db8:100:1::/64
ra_live_seen() { ra_json ra | jq -e --arg p "$PREFIX" 'select(any(.prefixes[]; .prefix == $p and .valid > 0))' >/dev/null; }

lab_up
T0=$(agent_ms)
roam_lab_prepare
agent_roam_setup_uci "option heartbeat_interval '1'" "option grace '2'" "option announce_mtu '0'"
LAN_MTU=$(lab_exec r1 cat /sys/class/net/lan/mtu)
WG_MTU=$(lab_exec r1 cat /sys/class/net/wg1/mtu)
[ "$WG_MTU" -lt "$LAN_MTU" ] || fail "lab: wg1's MTU $WG_MTU is not below lan's $LAN_MTU"
lab_capture_start ra lan eth0 -vvv 'icmp6 and ip6[40] == 134'
agent_roam_start_uci
lab_wait_for 15 roam_delegation_is delegated || fail "not delegated"
lab_wait_for 5 has_lan_slaac || fail "client got no address"
lab_wait_for 3 ra_live_seen || fail "no RA announcing $PREFIX"
r1_model_events mtu6-lowered | grep -q . || fail "netifd (model) did not lower lan's IPv6 MTU: the test proves nothing"
sleep 1.5 # any further RA
ra_json ra >"$LAB_DIR/ra.json"
bad=$(jq -c --arg p "$PREFIX" --argjson w "$WG_MTU" 'select(any(.prefixes[]; .prefix == $p and .valid > 0)) | select(.mtu == $w)' "$LAB_DIR/ra.json")
[ -z "$bad" ] || fail "an RA announced wg1's MTU with announce_mtu 0: $bad"
jq -e --arg p "$PREFIX" --argjson l "$LAN_MTU" 'select(any(.prefixes[]; .prefix == $p and .valid > 0)) | select(.mtu == $l or .mtu == null)' \
  "$LAB_DIR/ra.json" >/dev/null || fail "no RA with the LAN's MTU $LAN_MTU: $(cat "$LAB_DIR/ra.json")"
client_mtu=$(lab_exec lan cat /proc/sys/net/ipv6/conf/eth0/mtu)
[ "$client_mtu" = "$LAN_MTU" ] || fail "client's IPv6 MTU is $client_mtu, expected $LAN_MTU"
t "announce_mtu 0: RAs carry MTU $LAN_MTU (not wg1's $WG_MTU); client's IPv6 MTU $client_mtu"

# netifd writes wg1's MTU again whenever it enables the assignment (FINDINGS "lan's IPv6
# MTU"): after a withdrawal and a re-delegation the LAN must still see its own MTU.
nat_block_wireguard
lab_wait_for 20 roam_delegation_is withdrawn || fail "not withdrawn"
ra_count=$(ra_json ra | grep -c . || true)
nat_unblock_wireguard
lab_wait_for 25 roam_delegation_is delegated || fail "not delegated again"
ra_live_again() { [ "$(ra_json ra | tail -n +$((ra_count + 1)) | jq -c --arg p "$PREFIX" 'select(any(.prefixes[]; .prefix == $p and .valid > 0))' | grep -c .)" -gt 0 ]; }
lab_wait_for 5 ra_live_again || fail "no RA announcing $PREFIX after the re-delegation"
[ "$(r1_model_events mtu6-lowered | grep -c .)" -ge 2 ] || fail "netifd (model) did not write wg1's MTU again: the test proves nothing"
sleep 1.5
bad=$(ra_json ra | tail -n +$((ra_count + 1)) | jq -c --arg p "$PREFIX" --argjson w "$WG_MTU" 'select(any(.prefixes[]; .prefix == $p and .valid > 0)) | select(.mtu == $w)')
[ -z "$bad" ] || fail "after the re-delegation an RA announced wg1's MTU: $bad"
client_mtu=$(lab_exec lan cat /proc/sys/net/ipv6/conf/eth0/mtu)
[ "$client_mtu" = "$LAN_MTU" ] || fail "client's IPv6 MTU is $client_mtu after the re-delegation, expected $LAN_MTU"
t "after withdraw + re-delegation: RAs still carry $LAN_MTU; client's IPv6 MTU $client_mtu"
echo "PASS"
