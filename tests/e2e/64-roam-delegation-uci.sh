#!/usr/bin/env bash
# Issue 11 acceptance, OpenWrt mode (roam): the agent delegates its prefix through
# netifd, and what matters is what the LAN client SEES. r1 runs the netifd/odhcpd
# model (tests/netifd-model: behaves as the real daemons were observed, fixtures +
# /work/realdaemons/FINDINGS.md); its odhcpd drives a real radvd, the client in wgr-lan
# configures itself from real RAs (accept_ra 2), captured with tcpdump.
#   delegated: client address in the prefix, default route via r1, IPv6 to the
#              internet through the tunnel; RA MTU option = wg1's MTU
#   tunnel blocked past grace: within 2 s of the agent's withdrawal an RA with the
#              prefix at valid/preferred 0 AND router lifetime 0; the client's default
#              route via r1 is gone, IPv4 still works; no RA after the withdrawal
#              names an RDNSS inside the withdrawn prefix
#   unblocked: address preferred + default route back within 2 s of the first handshake
#              (first WireGuard packet from the hub on r1's uplink: a short outage may
#              keep the old session)
#   always:    wg1 not re-created (ifindex, model's link events), uci save dir without
#              any entry, /etc/config/network untouched
# NETIFD_MODEL_HANDLER=sh (wireguard.sh, default) or ucode (68-… runs that).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

export NETIFD_MODEL_HANDLER=${NETIFD_MODEL_HANDLER:-sh}
PREFIX=2001:db8:100:1::/64
GRACE=2
HB=1

r1_lan_ll() { ip -n wgr-r1 -6 -o addr show dev lan scope link | awk '{ sub(/\/.*/, "", $4); print $4; exit }'; }
client_gw() { ip -n wgr-lan -6 route show default | awk '$2 == "via" { print $3; exit }'; }
client_pref() {
  ip -n wgr-lan -6 -o addr show dev eth0 | awk -v a="$1" '$4 ~ "^"a"/" { for (i = 1; i <= NF; i++) if ($i == "preferred_lft") print $(i+1) }'
}
# The client uses the delegation: a preferred address in the prefix, default via r1.
client_delegated() {
  local a
  a=$(lan_slaac_addr)
  [ -n "$a" ] && [ "$(client_pref "$a")" != 0sec ] && [ "$(client_gw)" = "$R1_LL" ]
}
# The client dropped it: no default route via r1, the address deprecated.
client_withdrawn() { [ -z "$(client_gw)" ] && [ "$(client_pref "$ADDR")" = 0sec ]; }
deleg() { agent_roam_status | jq -c '.interfaces[0].delegation'; }
ms_of() { awk -v t="$1" 'BEGIN { printf "%.0f", t * 1000 }'; } # %d saturates at 2^31 in mawk

lab_up
T0=$(agent_ms)
t "netifd model: handler $NETIFD_MODEL_HANDLER"
roam_lab_prepare
agent_roam_setup_uci "option heartbeat_interval '$HB'" "option grace '$GRACE'"
cp "$LAB_DIR/r1/etc/network" "$LAB_DIR/r1/network.orig"
R1_LL=$(r1_lan_ll)
WG_IFINDEX=$(lab_exec r1 cat /sys/class/net/wg1/ifindex)
WG_MTU=$(lab_exec r1 cat /sys/class/net/wg1/mtu)
lab_capture_start ra lan eth0 -vvv 'icmp6 and ip6[40] == 134'
agent_roam_start_uci

# --- delegated -----------------------------------------------------------------
lab_wait_for 15 roam_delegation_is delegated || fail "agent never reported delegated: $(deleg)"
t "agent: delegated $(deleg)"
lab_wait_for 3 client_delegated || fail "client: no preferred address in $PREFIX with default via $R1_LL (addr '$(lan_slaac_addr)', gw '$(client_gw)')"
ADDR=$(lan_slaac_addr)
t "client: $ADDR (preferred $(client_pref "$ADDR")), default via $R1_LL"
lab_wait_for 5 lab_exec lan ping -6 -c1 -W1 "$LAB_INET6" || fail "client: IPv6 to the internet does not work"
t "client: IPv6 to $LAB_INET6 through the tunnel works"
ra_json ra >"$LAB_DIR/ra1.json"
jq -e --arg p "$PREFIX" --argjson m "$WG_MTU" \
  'select(any(.prefixes[]; .prefix == $p and .valid > 0)) | select(.mtu == $m)' \
  "$LAB_DIR/ra1.json" >/dev/null || fail "no RA announcing $PREFIX with MTU option $WG_MTU: $(cat "$LAB_DIR/ra1.json")"
client_mtu=$(lab_exec lan cat /proc/sys/net/ipv6/conf/eth0/mtu)
[ "$client_mtu" = "$WG_MTU" ] || fail "client's IPv6 MTU is $client_mtu, wg1's MTU is $WG_MTU"
t "RA MTU option $WG_MTU = wg1's MTU; client's IPv6 MTU $client_mtu"
agent_roam_status | jq -e --arg p "$PREFIX" --argjson m "$WG_MTU" '.interfaces[0].delegation |
  .interface == "wgroam_wg1" and .downstream.lan == $p and .mtu == $m and (.problem // null) == null' \
  >/dev/null || fail "status does not show interface/downstream/mtu: $(deleg)"

# --- withdrawn -------------------------------------------------------------------
nat_block_wireguard
t "the NAT drops WireGuard: tunnel down"
lab_wait_for $((GRACE + 15)) roam_delegation_is withdrawn || fail "not withdrawn: $(deleg)"
TW=$(agent_ms)
t "agent: withdrawn"
lab_wait_for 2.5 client_withdrawn || fail "client still uses r1 for IPv6 2.5 s after the withdrawal (gw '$(client_gw)', $ADDR preferred $(client_pref "$ADDR"))"
t "client: no IPv6 default route, $ADDR deprecated"
lab_exec lan ping -4 -c1 -W2 "$LAB_INET4" >/dev/null || fail "client: IPv4 must keep working"
t "client: IPv4 works"
sleep 3 # RAs odhcpd sends after the withdrawal (it answers changes after 1 s)
ra_json ra >"$LAB_DIR/ra2.json"
bye=$(jq -s --arg p "$PREFIX" --argjson tw "$TW" '[.[] | select(.t * 1000 > $tw - 20000)
  | select(.router_lifetime == 0 and any(.prefixes[]; .prefix == $p and .valid == 0 and .preferred == 0))
  | .t] | first // empty' "$LAB_DIR/ra2.json")
[ -n "$bye" ] || fail "no RA with $PREFIX valid/preferred 0 and router lifetime 0: $(tail -n 5 "$LAB_DIR/ra2.json")"
late=$(($(ms_of "$bye") - TW))
t "goodbye RA (prefix 0/0, router lifetime 0) ${late} ms after the agent reported withdrawn"
[ "$late" -le 2000 ] || fail "goodbye RA ${late} ms after the withdrawal (> 2000)"
bad=$(jq -c --argjson tw "$TW" 'select(.t * 1000 > $tw) | select(any(.rdnss[]; .addr | startswith("2001:db8:100:1:")))' "$LAB_DIR/ra2.json")
[ -z "$bad" ] || fail "RA after the withdrawal names an RDNSS inside the withdrawn prefix: $bad"
jq -c --argjson tw "$TW" 'select(.t * 1000 > $tw) | {dt_ms: ((.t * 1000 - $tw) | floor), router_lifetime, prefixes, rdnss}' "$LAB_DIR/ra2.json" |
  while read -r l; do t "RA after withdrawal: $l"; done

# --- restored --------------------------------------------------------------------
lab_capture_start hs r1 wan 'udp src port 51820'
nat_unblock_wireguard
t "the NAT passes WireGuard again"
lab_wait_for 25 client_delegated || fail "client did not get $PREFIX back (addr '$(lan_slaac_addr)', gw '$(client_gw)'): $(deleg)"
TB=$(agent_ms)
hs=$(lab_capture_stop hs | awk 'NR == 1 { print $1 }')
[ -n "$hs" ] || fail "no WireGuard packet from the hub seen on r1's uplink"
back=$((TB - $(ms_of "$hs")))
t "client: address preferred + default via r1 again ${back} ms after the first WireGuard packet from the hub"
[ "$back" -le 2000 ] || fail "restore took ${back} ms after the first packet from the hub (> 2000)"
lab_wait_for 5 lab_exec lan ping -6 -c1 -W1 "$LAB_INET6" || fail "IPv6 not back"
lab_wait_for 5 roam_delegation_is delegated || fail "agent does not report delegated: $(deleg)"

# --- invariants ------------------------------------------------------------------
[ "$(lab_exec r1 cat /sys/class/net/wg1/ifindex)" = "$WG_IFINDEX" ] || fail "wg1 was re-created (ifindex changed)"
ev=$(r1_model_events link-recreated)
[ -z "$ev" ] || fail "netifd re-created the WireGuard link: $ev"
t "wg1 kept (ifindex $WG_IFINDEX), no link re-creation by netifd ($NETIFD_MODEL_HANDLER)"
ch=$(r1_uci changes)
[ -z "$ch" ] || fail "uci save dir holds: $ch"
cmp -s "$LAB_DIR/r1/etc/network" "$LAB_DIR/r1/network.orig" || fail "/etc/config/network was written (flash)"
t "uci: no staged change, /etc/config/network untouched"
echo "PASS"
