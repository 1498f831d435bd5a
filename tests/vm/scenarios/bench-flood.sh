#!/bin/sh
# bench-flood: runs INSIDE the test VM (busybox sh, root, kernel WireGuard). A
# benchmark, not a test: the capture benchmark of bench/hub.sh on the VM's CPU
# (bench/hub.sh --vm ARCH boots it and turns its BENCH lines into tables).
#
# Two network namespaces joined by a veth pair: inet (198.51.100.1: the flood
# generator, and r1's WireGuard) and r2 (198.51.100.2, the hub: kernel wg0 on
# 51820 with the key in /extra/r2.key, one peer r1, idle after one handshake).
# r2 drops the flood in netfilter (raw prerouting), as the lab bench does:
# packet sockets see every frame before that, so the capture filters still run
# on all of it, but kernel WireGuard does not spend the guest's only CPU on it.
#
# Measured, each process's own CPU (schedstat, else utime+stime):
#   idle  the hub agent (poll_ms 500) for BENCH_IDLE_S s;
#   flood for each kind and rate, one BENCH_FLOOD_S s window with the agent
#         capturing, then one with tcpdump (same filter as bench/hub.sh)
#         instead: the same-run baseline.
# Files from the host (VM_EXTRA_DIR, see tests/vm/build.sh) in /extra: flood
# (bench/flood.c built for the guest), r2.key, mac1-garbage.bin, params
# (shell assignments: BENCH_PPS, BENCH_LOW_PPS, BENCH_FLOOD_S, BENCH_IDLE_S).
# vm-needs: nft
# vm-needs: tcpdump
set -u
# shellcheck source=tests/vm/lib.sh
. /etc/vm-lib.sh

BENCH_PPS=20000
BENCH_LOW_PPS=1000
BENCH_FLOOD_S=10
BENCH_IDLE_S=30
# shellcheck disable=SC1091 # written by bench/hub-vm.sh
[ -f /extra/params ] && . /extra/params

INET_IP=198.51.100.1
R2_IP=198.51.100.2
R2_TUN=2001:db8:100::1
R1_TUN=2001:db8:100::2
FILTER='udp dst port 51820 and udp[8] = 1 and udp[4:2] = 156'
STATE=/run/wgroam
r2() { ip netns exec r2 "$@"; }
inet() { ip netns exec inet "$@"; }

# cpu_us PID: the process's CPU time in µs (all threads).
HZ=100
cpu_us() {
  if [ -r "/proc/$1/schedstat" ]; then
    s_=0
    for f_ in /proc/"$1"/task/*/schedstat; do
      read -r v_ _ <"$f_" || continue
      s_=$((s_ + v_ / 1000))
    done
    echo "$s_"
  else
    # utime and stime: fields 14 and 15 (comm has no spaces here).
    awk -v hz="$HZ" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"
  fi
}
cpu_source() { if [ -r "/proc/$$/schedstat" ]; then echo schedstat; else echo "utime+stime"; fi; }
rx_packets() { r2 cat /sys/class/net/wan/statistics/rx_packets; }

# agent_seen: "handled dropped" from the agent's status: packets it
# classified (the ignored counters) and those dropped (kernel or budget).
agent_seen() {
  j_=$(status_json "$STATE" r2)
  h_=$(echo "$j_" | sed -n 's/.*"ignored":{\([^}]*\)}.*/\1/p' | tr ',' '\n' |
    awk -F: '{ s += $2 } END { print s + 0 }')
  d_=$(echo "$j_" | json_value capture_drops)
  echo "${h_:-0} ${d_:-0}"
}

# ---------------------------------------------------------------- setup ---
# tcpdump drops its privileges to user tcpdump, as on the host: the image has
# no user database of its own.
[ -s /etc/passwd ] || printf 'root:x:0:0:root:/root:/bin/sh\ntcpdump:x:104:110::/nonexistent:/bin/false\n' >/etc/passwd
[ -s /etc/group ] || printf 'root:x:0:\ntcpdump:x:110:\n' >/etc/group
must ip netns add inet
must ip netns add r2
must ip link add wan netns inet type veth peer name wan netns r2
for n in inet r2; do
  must ip -n "$n" link set lo up
  must ip -n "$n" link set wan up
done
must ip -n inet addr add "$INET_IP/24" dev wan
must ip -n r2 addr add "$R2_IP/24" dev wan

umask 077
must wg genkey >/tmp/r1.key
R1_PUB=$(wg pubkey </tmp/r1.key)
R2_PUB=$(wg pubkey </extra/r2.key)
must r2 ip link add wg0 type wireguard
must r2 wg set wg0 listen-port 51820 private-key /extra/r2.key \
  peer "$R1_PUB" allowed-ips "$R1_TUN/128"
must r2 ip -6 addr add "$R2_TUN/64" dev wg0 nodad
must r2 ip link set wg0 up
must inet ip link add wg1 type wireguard
must inet wg set wg1 listen-port 40001 private-key /tmp/r1.key \
  peer "$R2_PUB" endpoint "$R2_IP:51820" allowed-ips "$R2_TUN/128"
must inet ip -6 addr add "$R1_TUN/64" dev wg1 nodad
must inet ip link set wg1 up
if inet ping -6 -c 1 -W 5 "$R2_TUN" >/dev/null 2>&1; then pass "r1 -> r2 through the tunnel"; else fail "r1 -> r2 through the tunnel"; fi
# Only the flood is dropped: its sources (bench/flood.c) are these ports.
r2 nft -f - <<EOF || fail "nft"
table ip wgr_bench {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    ip saddr $INET_IP udp sport 20000-20255 drop
    ip saddr $INET_IP tcp sport 33000-33255 drop
    ip saddr 203.0.113.0/24 udp dport 51820 drop
  }
}
EOF

echo "BENCH machine cpu=$(awk -F': ' '/^cpu model/ { print $2; exit }' /proc/cpuinfo | tr ' ' '_') kernel=$(uname -r) cpu_source=$(cpu_source) agent=$(wgroam --version | head -n 1 | tr ' ' '_')"

# ----------------------------------------------------------------- idle ---
hub_conf /tmp/wgroam.conf
agent_start r2 /tmp/wgroam.conf "$STATE" agent || exit 1
sleep 3
pid=$(cat /tmp/agent.pid)
c0=$(cpu_us "$pid") t0=$(now_ms)
sleep "$BENCH_IDLE_S"
c1=$(cpu_us "$pid") t1=$(now_ms)
echo "BENCH idle poll_ms=500 cpu_us=$((c1 - c0)) wall_ms=$((t1 - t0)) rss_kib=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")"

# ---------------------------------------------------------------- flood ---
# window WHO KIND PPS: one flood with WHO (agent: running; tcpdump: started
# here) measuring; prints a BENCH line.
window() {
  who=$1 kind=$2 rate=$3 payloads=
  [ "$kind" = mac1 ] && payloads=/extra/mac1-garbage.bin
  gkind=$kind
  [ "$kind" = mac1 ] && gkind=spoofed
  if [ "$who" = tcpdump ]; then
    # Not through the function r2: backgrounded, a function runs in a
    # subshell and $! is that subshell, not tcpdump. The SIGINT below then went
    # to the subshell (an asynchronous command: it ignores SIGINT), tcpdump
    # never stopped and the wait hung; the CPU time read would have been the
    # subshell's too.
    /usr/bin/ip netns exec r2 tcpdump -n -i wan -w /dev/null "$FILTER" >/tmp/tcpdump.log 2>&1 &
    pid=$!
    if ! wait_file_has 20 /tmp/tcpdump.log "listening on"; then
      fail "tcpdump did not start:"
      sed 's/^/  /' /tmp/tcpdump.log
    fi
    s0="0 0"
  else
    pid=$(cat /tmp/agent.pid)
    s0=$(agent_seen)
  fi
  rx0=$(rx_packets)
  c0=$(cpu_us "$pid") t0=$(now_ms)
  out=$(inet env FLOOD_PAYLOADS="$payloads" /extra/flood "$INET_IP" "$R2_IP" "$rate" "$BENCH_FLOOD_S" "$gkind" 2>&1)
  c1=$(cpu_us "$pid") t1=$(now_ms)
  rx1=$(rx_packets)
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
  if [ "$who" = tcpdump ]; then
    # Bounded: a tcpdump that does not stop fails the run instead of hanging it.
    signal_and_wait "$pid" INT 20 || fail "tcpdump still running 20 s after SIGINT"
    wait "$pid"
    handled=$(awk '/packets received by filter/ { print $1 }' /tmp/tcpdump.log)
    dropped=$(awk '/packets dropped by kernel/ { print $1 }' /tmp/tcpdump.log)
  else
    usleep 5500000 # counters reach the status file within 5 s
    s1=$(agent_seen)
    handled=$((${s1% *} - ${s0% *}))
    dropped=$((${s1#* } - ${s0#* }))
  fi
  achieved=$(echo "$out" | awk '/^sent/ { print $7 }')
  [ -n "$achieved" ] || echo "flood: $out"
  echo "BENCH flood who=$who kind=$kind pps=$rate achieved=${achieved:-?} rx=$((rx1 - rx0)) cpu_us=$((c1 - c0)) wall_ms=$((t1 - t0)) handled=${handled:-0} dropped=${dropped:-0} rss_kib=$rss"
}

for spec in "wgjunk $BENCH_PPS" "spoofed $BENCH_PPS" "mac1 $BENCH_PPS" "wgjunk $BENCH_LOW_PPS"; do
  # shellcheck disable=SC2086 # two words on purpose
  window agent $spec
done
status_json "$STATE" r2 | head -c 1500
echo
agent_stop agent
agent_log agent 10
for spec in "wgjunk $BENCH_PPS" "spoofed $BENCH_PPS" "mac1 $BENCH_PPS" "wgjunk $BENCH_LOW_PPS"; do
  # shellcheck disable=SC2086
  window tcpdump $spec
done
echo "--- done ($(uptime_s)s uptime)"
exit "$failed"
