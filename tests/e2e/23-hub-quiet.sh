#!/usr/bin/env bash
# Issue 16 (idle): a quiet hub stops asking WireGuard every poll, and misses nothing by
# it. With nothing on the wire for 10 s (no packet to or from the listen port, no move,
# no link event), the hub agent reads wg0 once every 10 s instead of every poll_ms
# (500 here): counted as its requests on wireguard-go's UAPI socket and its event-loop
# wakeups (strace), against the same count while it is busy. Yet, while it is quiet:
#  - the relay's periodic re-check does not dump the routing table (a route event
#    does);
#  - a trickle of junk the kernel rejects itself (bad mac1) is examined and counted
#    without making it read WireGuard, one wakeup per 160 ms capture hold;
#  - r1 moving to a new NAT port and sending data is followed at once (the captured
#    packet wakes the agent; the poll would have taken up to 500 ms, the next quiet read
#    10 s);
#  - a stale endpoint pushed with `wg set` while nobody sends anything is undone at the
#    next quiet read (<= 10 s, and at once by any packet);
#  - the attacker's strongest replay: initiations recorded before the agent started,
#    sent after wg0 was re-created (the kernel forgot r1's timestamp and takes them)
#    once the agent has gone quiet: what the kernel took is rolled back, the agent
#    never moves r1 to the attacker, uci is untouched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT


# reads_in S: "UAPI_REQUESTS WAKEUPS ROUTE_DUMPS" of the hub agent during S seconds
# (a route dump is an RTM_GETROUTE request, type 0x1a, on its rtnetlink socket).
reads_in() {
  local out=$LAB_DIR/strace-$RANDOM.txt
  timeout -s INT "$1" strace -f -e trace=sendto,poll,ppoll -p "$(agent_hub_pid)" -o "$out" 2>/dev/null || true
  echo "$(grep -c 'get=1' "$out" || true) $(grep -cE '^[0-9]+ +(poll|ppoll|restart_syscall)\(' "$out" || true)" \
    "$(grep -cE 'nlmsg_type=(0x1a|RTM_GETROUTE)' "$out" || true)"
}

# time_until MAX_MS CMD...: ms until CMD succeeds (polled every 10 ms), or fails.
time_until() {
  local max=$1 start
  shift
  start=$(agent_ms)
  until "$@"; do
    [ $(($(agent_ms) - start)) -lt "$max" ] || return 1
    sleep 0.01
  done
  echo $(($(agent_ms) - start))
}

lab_up
T0=$(agent_ms)
agent_hub_setup "option poll_ms '500'"

# The attacker's recording, before any agent runs.
record_r1_start || fail "tcpdump did not start"
r1_rehandshake
lab_exec lan ping -6 -c2 -i0.2 -W2 "$LAB_INET6" >/dev/null || fail "no tunnel"
rec=$(record_r1_stop "$LAB_DIR/genuine.hex" "$LAB_DIR/transport.hex")
[ "$(echo "$rec" | jq .initiations)" -ge 1 ] || fail "recorded $rec"
t "recorded before the agent started: $rec"

agent_hub_start
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "no tunnel"
learned="$LAB_NAT_OUT4:$(lab_nat_port_of_r1)"
lab_wait_for 3 agent_hub_endpoint_is "$learned" || fail "agent did not learn r1"

# Busy (right after the start): a read per poll.
read -r busy_reads busy_wakes _ < <(reads_in 4)
t "first 4 s after the start: $busy_reads WireGuard reads, $busy_wakes wakeups"
[ "$busy_reads" -ge 6 ] || fail "only $busy_reads reads in 4 s at poll_ms 500 (the count is broken)"

# Quiet: 10 s after the last packet, move or link event.
sleep 8
read -r quiet_reads quiet_wakes quiet_dumps < <(reads_in 10)
t "10 s of a quiet tunnel: $quiet_reads WireGuard reads, $quiet_wakes wakeups, $quiet_dumps route dumps (busy: 20 and 20)"
[ "$quiet_reads" -le 2 ] || fail "$quiet_reads reads in 10 s of quiet (expected 1, 2 at most)"
[ "$quiet_wakes" -le 3 ] || fail "$quiet_wakes wakeups in 10 s of quiet"
# The relay's periodic re-check (sysctls) does not dump the routing table: route and
# link events say when it changed. One does, and the table is dumped again.
[ "$quiet_dumps" = 0 ] || fail "$quiet_dumps route dumps in 10 s of quiet (route events are watched)"
(sleep 1; lab_exec r2 ip -6 route add blackhole 2001:db8:beef::/64) &
adder=$!
read -r _ _ event_dumps < <(reads_in 3)
wait "$adder"
lab_exec r2 ip -6 route del blackhole 2001:db8:beef::/64
sleep 1 # (the look the deletion asks for, within a poll, before the next window)
t "a route added while quiet: $event_dumps route dumps in the next 2 s"
[ "$event_dumps" -ge 1 ] || fail "a route event did not make the relay dump the table again"

# Junk the kernel rejects itself (bad mac1) keeps it quiet: every packet is examined
# and counted, none makes it read WireGuard.
junk0=$(agent_hub_status | jq '.interfaces[0].ignored.bad_mac1 // 0')
lab_spawn junk inet python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 9
while time.monotonic() < end:
    s.sendto(b"\x01\x00\x00\x00" + os.urandom(144), (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.005)
' "$LAB_R2_WAN4" "$LAB_R2_PORT"
sleep 0.5
read -r junk_reads junk_wakes _ < <(reads_in 8)
sleep 1
lab_stop junk 2>/dev/null || true
sleep 5.5
junk=$(($(agent_hub_status | jq '.interfaces[0].ignored.bad_mac1 // 0') - junk0))
t "bad-mac1 junk at ~200 packets a second: $junk counted, $junk_reads WireGuard reads and $junk_wakes wakeups in 8 s"
[ "$junk" -ge 1000 ] || fail "only $junk junk packets counted"
[ "$junk_reads" -le 2 ] || fail "junk made the quiet hub read WireGuard $junk_reads times in 8 s"
# Every wakeup finds frames, so the capture's hold grows to 160 ms and its end is the
# wakeup that reads them (~50 in 8 s; a timer wakeup and then a poll finding the ring
# ready, at 80 ms, made ~200).
[ "$junk_wakes" -le 80 ] || fail "a junk trickle woke the hub $junk_wakes times in 8 s (~50 expected)"

# A genuine move while quiet: followed at once.
p1=$(lab_nat_port_of_r1)
# r1's data from the new port: the kernel roams on it, the capture wakes the agent.
p2=$(r1_new_nat_port "$p1") || fail "r1 got no new NAT port"
moved="$LAB_NAT_OUT4:$p2"
took=$(time_until 10000 agent_hub_endpoint_is "$moved") || fail "agent did not follow r1 to $moved"
t "r1 moved to $moved while the hub was quiet: followed ${took} ms after its ping's answer"
[ "$took" -le 2000 ] || fail "${took} ms: the packet did not wake the quiet hub"
learned=$moved
stale="$LAB_NAT_OUT4:$p1"

# A push nobody sends a packet after, once quiet again.
sleep 11
from=$(wc -l <"$LAB_DIR/logs/agent-r2.log")
ip netns exec wgr-r2 wg set wg0 peer "$(lab_r1_pubkey)" endpoint "$stale"
took=$(time_until 13000 kernel_is "$learned") || fail "the push of $stale was never undone"
t "stale endpoint pushed while quiet and idle: undone ${took} ms later (next quiet read)"
tail -n +"$((from + 1))" "$LAB_DIR/logs/agent-r2.log" | grep -q "(restored" || fail "no restore logged"

# The strongest replay: wg0 re-created (the kernel forgot r1's timestamp), then quiet.
lab_r2_wg_stop
lab_wait_for 3 iface_up_is false || fail "agent did not notice wg0 going away"
lab_r2_wg_start "$learned"
lab_wait_for 3 iface_up_is true || fail "agent did not notice wg0 coming back"
sleep 11
read -r quiet_reads _ < <(reads_in 3)
[ "$quiet_reads" -le 1 ] || fail "not quiet 11 s after the link came back ($quiet_reads reads in 3 s)"
from=$(wc -l <"$LAB_DIR/logs/agent-r2.log")
uci0=$(sum_md5 "$LAB_DIR"/r2/save/* "$LAB_DIR/r2/etc/network")
endpoint_sampler_start
sent=$(lab_exec inet python3 "$here/spoof.py" "$(lab_r2_pubkey)" "$LAB_DIR/genuine.hex" \
  "$LAB_R2_WAN4" "$LAB_R2_PORT" 200)
sleep 1
endpoint_sampler_stop
foreign=$(grep -c "$LAB_INET4" "$LAB_DIR/endpoints.log" || true)
samples=$(wc -l <"$LAB_DIR/endpoints.log")
t "replayed while quiet: sent $sent; kernel endpoint foreign in $foreign of $samples samples"
tail -n +"$((from + 1))" "$LAB_DIR/logs/agent-r2.log" | head -n 8 | sed 's/^/    agent: /'
[ "$(lab_r2_endpoint)" = "$learned" ] || fail "kernel endpoint is $(lab_r2_endpoint), not $learned"
! tail -n +"$((from + 1))" "$LAB_DIR/logs/agent-r2.log" | grep -q -- "-> $LAB_INET4" ||
  fail "the agent moved r1 to the attacker"
[ "$(sum_md5 "$LAB_DIR"/r2/save/* "$LAB_DIR/r2/etc/network")" = "$uci0" ] || fail "uci changed"
if [ "$foreign" != 0 ]; then
  tail -n +"$((from + 1))" "$LAB_DIR/logs/agent-r2.log" | grep -q "(restored" ||
    fail "the kernel took a replay and nothing was restored"
fi
echo "PASS"
