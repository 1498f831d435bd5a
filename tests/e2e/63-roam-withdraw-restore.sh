#!/usr/bin/env bash
# Issue 5 acceptance: when the tunnel is down longer than the grace period, the
# prefix is withdrawn — on plain Linux radvd announces it with lifetime 0 and the
# router lifetime 0, so LAN clients deprecate the address and fall back to IPv4
# instead of timing out on dead IPv6; when the tunnel is back it is announced again.
# Issue 11 (same semantics on plain Linux): the RA MTU option is wg1's MTU while
# delegated; the goodbye RA (prefix 0/0 AND router lifetime 0, in one RA) reaches the
# client within 2 s of the agent's withdrawal; the address is preferred again within
# 2 s of the first handshake (the first WireGuard packet from the hub: after a short
# outage the old session may still be valid) when the tunnel is back.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

GRACE=3
HB=1
preferred_lft() {
  ip -n wgr-lan -6 -o addr show dev eth0 | awk -v a="$1" '$4 ~ "^"a"/" { for (i = 1; i <= NF; i++) if ($i == "preferred_lft") print $(i+1) }'
}
deprecated() { [ "$(preferred_lft "$1")" = 0sec ]; }
preferred() { case "$(preferred_lft "$1")" in 0sec | '') return 1 ;; *) return 0 ;; esac; }
ra_seen() { grep -q "$1" "$(lab_capture_file ra)"; }
ra_mtu_seen() { ra_json ra | jq -e --argjson m "$WG_MTU" 'select(.mtu == $m)' >/dev/null; }
ms_of() { awk -v t="$1" 'BEGIN { printf "%.0f", t * 1000 }'; } # %d saturates at 2^31 in mawk

lab_up
T0=$(agent_ms)
roam_lab_prepare
agent_roam_setup "option heartbeat_interval '$HB'" "option grace '$GRACE'"
WG_MTU=$(lab_exec r1 cat /sys/class/net/wg1/mtu)
lab_capture_start ra lan eth0 -vvv 'icmp6 and ip6[40] == 134'
agent_roam_start
lab_wait_for 10 has_lan_slaac || fail "LAN client got no address"
addr=$(lan_slaac_addr)
t "delegated; LAN client uses $addr (preferred_lft $(preferred_lft "$addr"))"
lab_wait_for 3 ra_mtu_seen ||
  fail "no RA with MTU option $WG_MTU (wg1's MTU): $(ra_json ra | tail -n 2)"
[ "$(lab_exec lan cat /proc/sys/net/ipv6/conf/eth0/mtu)" = "$WG_MTU" ] || fail "client's IPv6 MTU is not $WG_MTU"
t "RA MTU option = wg1's MTU $WG_MTU; client's IPv6 MTU follows"

nat_block_wireguard
down=$(agent_ms)
t "the NAT now drops WireGuard: tunnel down"
lab_wait_for $((GRACE + 10)) roam_delegation_is withdrawn || fail "prefix not withdrawn"
TW=$(agent_ms)
took=$((TW - down))
t "prefix withdrawn ${took} ms after the tunnel went down (grace ${GRACE} s)"
[ "$took" -ge $((GRACE * 1000)) ] || fail "withdrawn before the grace period"
[ "$took" -le $(((GRACE + 2 * HB + 3) * 1000)) ] || fail "withdrawn too late"
lab_wait_for 5 ra_seen "valid time 0s" || fail "no RA with valid lifetime 0 on the LAN"
lab_wait_for 5 ra_seen "router lifetime 0s" || fail "no RA with router lifetime 0"
lab_wait_for 5 deprecated "$addr" || fail "client did not deprecate $addr (preferred_lft $(preferred_lft "$addr"))"
t "RA: prefix valid 0s, router lifetime 0s; client deprecated $addr"
bye=$(ra_json ra | jq -s --argjson d "$down" '[.[] | select(.t * 1000 > $d)
  | select(.router_lifetime == 0 and any(.prefixes[]; .prefix == "2001:db8:100:1::/64" and .valid == 0 and .preferred == 0))
  | .t] | first // empty')
[ -n "$bye" ] || fail "no single RA with prefix 0/0 AND router lifetime 0"
late=$(($(ms_of "$bye") - TW))
t "goodbye RA ${late} ms after the agent reported withdrawn"
[ "$late" -le 2000 ] || fail "goodbye RA ${late} ms after the withdrawal (> 2000)"
lab_exec lan ping -4 -c1 -W2 "$LAB_INET4" >/dev/null || fail "IPv4 must keep working"

lab_capture_start hs r1 wan 'udp src port 51820'
nat_unblock_wireguard
up=$(agent_ms)
lab_wait_for 25 preferred "$addr" || fail "client address not preferred again"
back=$(agent_ms)
hs=$(lab_capture_stop hs | awk 'NR == 1 { print $1 }')
[ -n "$hs" ] || fail "no WireGuard packet from the hub seen on r1's uplink"
t "client address preferred again $((back - $(ms_of "$hs"))) ms after the first WireGuard packet from the hub"
[ $((back - $(ms_of "$hs"))) -le 2000 ] || fail "restore took more than 2 s after the first packet from the hub"
lab_wait_for 15 roam_delegation_is delegated || fail "prefix not restored"
t "tunnel back: prefix delegated again after $(($(agent_ms) - up)) ms"
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "IPv6 not back"
t "client address preferred again ($(preferred_lft "$addr")); IPv6 works"
agent_roam_status | jq -c '.interfaces[0].delegation'
grep -q "withdraw" "$LAB_DIR/logs/agent-r1.log" || fail "withdrawal not logged"
echo "PASS"
