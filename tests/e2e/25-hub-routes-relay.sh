#!/usr/bin/env bash
# Issue 4 items 5 and 6: the hub agent on r2 routes r1's prefix into the tunnel
# (proto 119, exactly once, also across a crash + restart), switches IPv6 forwarding
# on without losing the default route learned by RA (accept_ra 2 first), enforces the
# relay policy (nft table inet wgroam: into wg0 only from the WAN), undoes all of it on
# a clean stop, and answers neighbour solicitations on the WAN for r1's prefix when the
# provider treats it as on-link (ndp_proxy).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

fail() {
  echo "FAIL: $*"
  echo "--- r2 routes"; ip -n wgr-r2 -6 route show 2>&1 || true
  echo "--- r2 nft"; ip netns exec wgr-r2 nft list table inet wgroam 2>&1 || true
  echo "--- agent log"; agent_hub_log || true
  exit 1
}

PREFIX=2001:db8:100:1::/64
CONF=$LAB_DIR/r2/wgroam.conf

r2() { ip netns exec wgr-r2 "$@"; }
r2_sysctl() { r2 cat "/proc/sys/net/ipv6/conf/$1"; }
# Routes to r1's prefix on r2, one per line.
prefix_routes() { ip -n wgr-r2 -6 route show "$PREFIX"; }
our_route_present() { prefix_routes | grep -q "dev wg0 proto 119 metric 1119"; }
no_prefix_route() { [ -z "$(prefix_routes)" ]; }
nft_table_present() { r2 nft list table inet wgroam >/dev/null 2>&1; }
ra_default() { ip -n wgr-r2 -6 route show default proto ra; }
has_ra_default() { [ -n "$(ra_default)" ]; }
inet_reaches_lan() { ping_ok inet "$LAB_LAN6"; }
# agent_start: starts the agent and waits for its first log line (a status file from an
# earlier run does not count).
agent_start() {
  agent_hub_start
  lab_wait_for 5 grep -q "hub started" "$(lab_log agent-r2)" || fail "agent did not start"
}
agent_stop() {
  local pid
  pid=$(agent_hub_pid)
  kill -TERM "$pid"
  lab_wait_for 5 _lab_pid_gone "$pid" || fail "agent did not stop on SIGTERM"
  wait "$pid" 2>/dev/null || true
}
# Counter of the relay rule that drops packets into wg0 from elsewhere than the WAN.
not_from_wan_drops() {
  r2 nft list table inet wgroam |
    awk '/oifname "wg0" iifname != "wan" counter/ { for (i = 1; i <= NF; i++) if ($i == "packets") print $(i + 1) }'
}

lab_up
T0=$(agent_ms)
agent_hub_setup
cat >>"$CONF" <<'EOF'
	option wan 'wan'
	option routes '1'
	option forwarding '1'
	option relay 'nft'
EOF

# r2 as a host that learns its default route from router advertisements (a VPS):
# forwarding off, accept_ra 1, radvd on the provider side (inet's br0).
r2 sysctl -q -w net.ipv6.conf.all.forwarding=0
[ "$(r2_sysctl wan/accept_ra)" = 1 ] || fail "lab: r2 wan accept_ra is not 1"
ip netns exec wgr-inet sysctl -q -w net.ipv6.conf.all.forwarding=1 # radvd insists
cat >"$LAB_DIR/radvd.conf" <<'EOF'
interface br0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 3;
	MaxRtrAdvInterval 4;
	AdvDefaultLifetime 600;
};
EOF
lab_spawn radvd inet radvd -n -C "$LAB_DIR/radvd.conf" -p "$LAB_DIR/radvd.pid" -m stderr
lab_wait_for 10 has_ra_default || fail "r2 learned no default route from radvd: $(cat "$(lab_log radvd)")"
t "r2 (forwarding 0, accept_ra 1) learned: $(ra_default)"

# Control (the seed bug): forwarding on while accept_ra is 1 purges the RA default
# route. (Only a freshly learned one: the kernel marks the table when an RA adds a
# default route and clears the mark on every purge, so test this first.)
r2 sysctl -q -w net.ipv6.conf.all.forwarding=1
! has_ra_default || fail "control: the kernel kept the RA route (the test would prove nothing)"
t "control: forwarding 1 with accept_ra 1 purges the RA default route"
r2 sysctl -q -w net.ipv6.conf.all.forwarding=0
lab_wait_for 10 has_ra_default || fail "r2 did not learn the RA default route again"

# The lab routes r1's prefix itself; take that away so the agent has to.
ip -n wgr-r2 route del "$PREFIX" dev wg0
no_prefix_route || fail "lab route still there"
t "removed the lab's route to $PREFIX"

# --- Run 1: clean start and stop -------------------------------------------------
agent_start
t "hub agent running (routes, forwarding, relay nft)"
lab_wait_for 8 our_route_present || fail "agent did not add a route to $PREFIX: $(prefix_routes)"
t "agent added: $(prefix_routes)"
[ "$(prefix_routes | wc -l)" = 1 ] || fail "more than one route: $(prefix_routes)"
[ "$(r2_sysctl wan/accept_ra)" = 2 ] || fail "accept_ra is $(r2_sysctl wan/accept_ra), expected 2"
[ "$(r2_sysctl all/forwarding)" = 1 ] || fail "forwarding is $(r2_sysctl all/forwarding), expected 1"
has_ra_default || fail "the RA default route was purged when forwarding went on"
t "forwarding 1 with accept_ra 2: the RA default route survived"
nft_table_present || fail "no nft table inet wgroam"
# status --json says the same (within one status refresh).
relay_status_ok() {
  agent_hub_status | jq -e --arg p "$PREFIX" '.relay.nft_table == true and
    (.relay.routes.wg0 | index($p)) != null and
    (.relay.changed_sysctls | index("net/ipv6/conf/all/forwarding")) != null' >/dev/null
}
lab_wait_for 6 relay_status_ok || fail "status --json relay: $(agent_hub_status | jq -c .relay)"
t "status --json relay: $(agent_hub_status | jq -c .relay)"

lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "LAN -> inet through the tunnel failed"
lab_wait_for 3 inet_reaches_lan || fail "inet -> LAN ping failed"
t "LAN -> inet and inet -> LAN pings work through r2's route and relay table"

# Relay policy: a second link into r2 (side <-> inet's r2side) that is not the WAN.
ip -n wgr-r2 link add side type veth peer name r2side netns wgr-inet
ip -n wgr-r2 addr add 2001:db8:fffe::2/64 dev side nodad
ip -n wgr-r2 link set side up
ip -n wgr-inet addr add 2001:db8:fffe::1/64 dev r2side nodad
ip -n wgr-inet link set r2side up
ip -n wgr-inet route add "$LAB_LAN6/128" via 2001:db8:fffe::2 dev r2side
before=$(not_from_wan_drops)
if ip netns exec wgr-inet ping -6 -c2 -W1 -I 2001:db8:fffe::1 "$LAB_LAN6" >/dev/null 2>&1; then
  fail "a packet entering r2 on 'side' was forwarded into wg0"
fi
after=$(not_from_wan_drops)
[ "$after" -ge $((before + 2)) ] || fail "relay drop counter went $before -> $after, expected +2"
t "into wg0 from a non-WAN link: dropped by inet wgroam ($before -> $after packets)"
ip -n wgr-inet route del "$LAB_LAN6/128" via 2001:db8:fffe::2 dev r2side
inet_reaches_lan || fail "inet -> LAN over the WAN failed after the side test"
[ "$(not_from_wan_drops)" = "$after" ] || fail "WAN traffic hit the drop rule"
t "the same ping over the WAN passes"

agent_stop
no_prefix_route || fail "route left after a clean stop: $(prefix_routes)"
! nft_table_present || fail "nft table left after a clean stop"
[ "$(r2_sysctl all/forwarding)" = 0 ] || fail "forwarding not restored to 0"
[ "$(r2_sysctl wan/accept_ra)" = 1 ] || fail "accept_ra not restored to 1"
t "SIGTERM: route and nft table removed, forwarding 0 and accept_ra 1 restored"

# --- Run 2 and 3: crash and restart ---------------------------------------------
agent_start
lab_wait_for 8 our_route_present || fail "run 2: no route"
kill -KILL "$(agent_hub_pid)"
lab_wait_for 3 _lab_pid_gone "$(agent_hub_pid)" || fail "agent survived SIGKILL"
wait "$(agent_hub_pid)" 2>/dev/null || true
our_route_present || fail "route vanished with the killed agent"
t "agent killed (SIGKILL): its route stays"
agent_start
sleep 5 # more than the 3 s grace and several polls
[ "$(prefix_routes | wc -l)" = 1 ] || fail "after the restart: $(prefix_routes)"
! grep -q "adding route" "$(lab_log agent-r2)" || fail "restarted agent added its route again"
[ "$(r2 nft list tables | grep -c 'inet wgroam')" = 1 ] || fail "nft tables: $(r2 nft list tables)"
inet_reaches_lan || fail "inet -> LAN after the restart"
t "restarted agent found its route: still exactly one, nothing re-added"

# --- NDP proxy --------------------------------------------------------------------
# The provider treats r1's prefix as on-link on the WAN segment (a switched /64).
ip -n wgr-inet route replace "$PREFIX" dev br0
ip -n wgr-inet neigh flush dev br0
if ip netns exec wgr-inet ping -6 -c2 -W1 "$LAB_LAN6" >/dev/null 2>&1; then
  fail "inet reached the LAN on-link without the NDP proxy"
fi
t "prefix on-link at inet: no neighbour answers, ping fails"
echo "	option ndp_proxy '1'" >>"$CONF"
kill -HUP "$(agent_hub_pid)"
lab_wait_for 5 grep -q "wan: NDP proxy answers for" "$(lab_log agent-r2)" || fail "NDP proxy did not start"
lab_wait_for 5 inet_reaches_lan || fail "inet -> LAN on-link with ndp_proxy failed"
mac=$(ip -n wgr-r2 link show wan | awk '/link\/ether/ { print $2 }')
neigh=$(ip -n wgr-inet -6 neigh show "$LAB_LAN6" dev br0)
[[ "$neigh" == *"lladdr $mac"* ]] || fail "inet's neighbour entry is '$neigh', expected r2's wan $mac"
t "ndp_proxy 1: inet -> LAN works; inet has $LAB_LAN6 at r2's wan MAC $mac"

sed -i "/option ndp_proxy '1'/d" "$CONF"
kill -HUP "$(agent_hub_pid)"
lab_wait_for 5 grep -q "wan: NDP proxy off" "$(lab_log agent-r2)" || fail "NDP proxy did not stop"
ip -n wgr-inet neigh flush dev br0
if ip netns exec wgr-inet ping -6 -c2 -W1 "$LAB_LAN6" >/dev/null 2>&1; then
  fail "inet reached the LAN on-link after the NDP proxy stopped"
fi
t "ndp_proxy 0 again: ping fails"

agent_stop
no_prefix_route || fail "route left after the final stop: $(prefix_routes)"
! nft_table_present || fail "nft table left after the final stop"
t "SIGTERM: route and table removed"
echo "PASS"
