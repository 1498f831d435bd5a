#!/bin/sh
# hub-restart-recovery: runs INSIDE the test VM (busybox sh, root, kernel WireGuard).
# vm-needs: nft
#
# Issue 4 (tests/e2e/20-hub-restart-recovery.sh) with kernel WireGuard, as on
# OpenWrt. Topology: /etc/vm-lib.sh (inet, r2 hub with the wgroam hub agent,
# a masquerading NAT with random ports, r1 without keepalive, a LAN client).
# After r1's handshake, r2's wg0 is deleted and re-created with the stale
# endpoint (what netifd does from uci), and r1's next packet gets a new NAT
# mapping (r1 changes its WireGuard listen port: the VM has no conntrack tool
# for `conntrack -F`; to r2 both look the same, a new outside port). The new
# wg0 has lost the session, so it cannot authenticate r1's data packet and the
# kernel alone does not move the endpoint; the agent recognises the session
# index it saw r2 hand out and moves it. Checked: the agent's endpoint move,
# `last_change.why == "index"`, and inbound IPv6 from inet to the LAN client
# within BOUND_MS of r1's packet.
#
# Timing: the inbound pings start once the agent has logged the move (its
# latency is measured separately). An inbound packet reaching the new wg0
# earlier would make r2 initiate a handshake to the stale endpoint, and kernel
# WireGuard sends the next initiation only 5 s later (REKEY_TIMEOUT). Both
# times are counted from before the process sending r1's packet starts, so
# they include that start (under TCG 0.1-1 s).
# Prints PASS:/FAILED: lines; exits 0 only if every check passed.
# shellcheck disable=SC2317 # helpers are called through wait_for
set -u
# shellcheck source=tests/vm/lib.sh
. /etc/vm-lib.sh

# The lab (wireguard-go at native speed) asserts 1 s. Under TCG on a 2-core
# host with load ~5 the VM measured 0.43-2.0 s, nearly all of it process
# starts and polling (the recovering ping's own round trip, handshake
# included, is 10-50 ms). The VM asserts BOUND_MS, prints the measured value
# and whether the lab's 1 s was met.
BOUND_MS=3000
LAB_BOUND_MS=1000
STATE=/run/wgroam-r2
AGENT=agent-r2

agent_json() { status_json "$STATE" r2; }
agent_field() { agent_json | json_value "$1"; }
agent_up_is() { [ "$(agent_field up)" = "$1" ]; }
agent_endpoint_is() { [ "$(agent_field endpoint)" = "$1" ]; }
# LAN client -> inet through the tunnel, a few tries (the first one also
# carries r1's handshake).
lan_to_inet() {
  n=0
  while [ "$n" -lt 3 ]; do
    ping_once lan "$INET6" && return 0
    n=$((n + 1))
  done
  return 1
}

step "setup"
must topo_up 40001
# The tunnel default route as netifd sets it (source-specific).
must ns r1 ip -6 route add ::/0 from 2001:db8:100::/48 dev wg1
must hub_conf /tmp/wgroam-r2.conf
must agent_start r2 /tmp/wgroam-r2.conf "$STATE" "$AGENT"
echo "agent: $(wgroam --version)"

step "r1 handshakes"
if lan_to_inet; then pass "LAN client -> inet through the tunnel (r1's handshake)"; else fail "LAN client -> inet through the tunnel"; fi
p1=$(nat_port "$R1_WAN4_A" 40001)
if [ -n "$p1" ]; then pass "NAT maps r1:40001 to :$p1"; else fail "no NAT mapping for r1:40001"; fi
if wait_for 3 agent_endpoint_is "$NAT_OUT4:$p1"; then
  pass "agent follows r1 at $NAT_OUT4:$p1"
else
  fail "agent shows r1 at '$(agent_field endpoint)', expected $NAT_OUT4:$p1"
fi
if ping_once inet "$LAN6"; then pass "inbound ping inet -> LAN client before the restart"; else fail "inbound ping inet -> LAN client before the restart"; fi

step "r2's wg0 re-created with the stale endpoint"
must ns r2 ip link del wg0
if wait_for 3 agent_up_is false; then pass "agent noticed wg0 going away"; else fail "agent did not notice wg0 going away (up: '$(agent_field up)')"; fi
# r1's next packet gets a new NAT mapping.
must ns r1 wg set wg1 listen-port 40002
must r2_wg_up "$NAT_OUT4:$p1"
if wait_for 3 agent_up_is true; then pass "agent noticed wg0 coming back"; else fail "agent did not notice wg0 coming back"; fi
usleep 600000 # one agent poll: it has nothing better to restore
ep=$(r2_endpoint)
if [ "$ep" = "$NAT_OUT4:$p1" ]; then
  pass "wg0 holds the stale endpoint $ep before r1 sends"
else
  fail "wg0's endpoint is '$ep' before r1 sent anything, expected the stale $NAT_OUT4:$p1"
fi

step "r1 sends one packet under its old session"
t0=$(now_ms)
# Not waited for: r2 drops it (unknown session), no reply comes.
/usr/bin/ip netns exec lan ping -6 -c 1 -W 1 "$INET6" >/dev/null 2>&1 &
r1_ping=$!
# The agent logs a move as it makes it; the log is polled without starting
# processes, and the inbound pings start at once.
took=
if wait_file_has 5 "/tmp/$AGENT.log" "endpoint $NAT_OUT4:$p1 -> "; then
  moved_ms=$(($(now_ms) - t0))
  took=$(inbound_ms inet "$LAN6" 5 "$t0")
  line=$(grep -F "endpoint $NAT_OUT4:$p1 -> " "/tmp/$AGENT.log" | head -n 1)
  pass "agent moved r1's endpoint ${moved_ms} ms after r1's packet: ${line#*: }"
else
  moved_ms=
  fail "agent did not move r1's endpoint within 5 s of r1's packet (kernel: $(r2_endpoint))"
fi
if [ -z "$moved_ms" ]; then
  :
elif [ -z "$took" ]; then
  fail "inbound ping inet -> LAN client still failing 5 s after r1's packet"
elif [ "$took" -le "$BOUND_MS" ]; then
  pass "inbound ping inet -> LAN client works ${took} ms after r1's packet (bound ${BOUND_MS} ms)"
else
  fail "inbound ping inet -> LAN client took ${took} ms after r1's packet (bound ${BOUND_MS} ms)"
fi
met=no
[ -n "$took" ] && [ "$took" -le "$LAB_BOUND_MS" ] && met=yes
echo "timing: from r1's packet: agent moved the endpoint after ${moved_ms:-?} ms; inbound ping" \
  "answered after ${took:-?} ms (lab bound ${LAB_BOUND_MS} ms met: $met)"
[ -f /tmp/inbound.info ] && echo "timing: inbound $(cat /tmp/inbound.info)"

ep=$(r2_endpoint)
p2=${ep##*:}
np=$(nat_port "$R1_WAN4_A" 40002)
if [ "$ep" = "$NAT_OUT4:$np" ] && [ "$np" != "$p1" ]; then
  pass "r2's kernel endpoint is $ep: the NAT's new mapping of r1:40002 (was :$p1)"
else
  fail "r2's kernel endpoint is '$ep'; the NAT maps r1:40002 to ':$np' (old :$p1)"
fi
# Confirmed (and staged) when the hub's handshake there completes: the next poll.
if wait_file_has 2 "/tmp/$AGENT.log" "endpoint $NAT_OUT4:$p1 -> $NAT_OUT4:$p2 (index)"; then
  pass "agent logged the move to :$p2 as (index)"
else
  fail "agent log has no line 'endpoint $NAT_OUT4:$p1 -> $NAT_OUT4:$p2 (index)'"
fi
why_is_index() { [ "$(agent_field why)" = index ]; }
wait_for 2 why_is_index || true
why=$(agent_field why)
if [ "$why" = index ]; then pass "agent: last_change.why is index"; else fail "agent: last_change.why is '$why', expected index"; fi
ns r2 wgroam status --state-dir "$STATE" | sed 's/^/  /'

kill "$r1_ping" 2>/dev/null
wait "$r1_ping" 2>/dev/null
agent_stop "$AGENT"
agent_log "$AGENT"
step "done"
exit "$failed"
