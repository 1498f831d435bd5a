#!/usr/bin/env bash
# Benchmarks of the wgroam hub agent in the network-namespace lab (tests/lab). Prints
# tables (Markdown) in which every number stands beside its baseline, measured in the
# same run. Not a pass/fail test: it fails only when it cannot measure.
#
#   bash bench/hub.sh            # as root; 8-10 minutes; output also in
#                                # target/bench/hub-latest.md
#   bash bench/hub.sh --vm mipsel   # the capture section (agent vs tcpdump) inside
#                                # the mipsel test VM (qemu-system Malta, 24Kc,
#                                # kernel WireGuard): bench/hub-vm.sh
#
# Needs the agent ($WGROAM_BIN, else target/x86_64-unknown-linux-musl/release/wgroam,
# else target/debug/wgroam) and the uci tool (tests/tools/build-uci.sh), as the e2e
# tests do; compiles bench/flood.c with cc.
#
# Sections:
#   1. detection latency: r1's packet -> new endpoint visible in `status`, for the
#      kernel roam path (bound by poll_ms) and for a captured initiation;
#   2. idle behaviour: wakeups/s, syscalls/min and CPU with a quiet tunnel, for
#      poll_ms 500 (default), 1000 and 2000;
#   3. capture cost: CPU of the agent while >= 100 kpps of other traffic crosses r2's
#      WAN, beside no capture at all and tcpdump with the same filter; plus floods of
#      packets shaped like initiations (which pass the kernel filter), from few
#      sources and from a new (spoofed, 203.0.113.0/24) source each;
#   4. mass move: 51 peers (tests/lab/many.sh) get new NAT ports at once: when the
#      agent stages them in uci and when all are visible, beside one peer (section 1);
#   5. memory: VmRSS/VmHWM with 1, 100 and 1000 peers (kernel + uci), beside tcpdump.
#
# Knobs (environment): BENCH_BASE_BIN (another agent build, e.g. main's, whose capture
# cost is measured in the same run), BENCH_LOW_PPS (4000: a flood below the agent's
# frame budget, for the cost per packet without shedding), BENCH_LOW_PAIRS (4 more
# agent/tcpdump pairs at that rate, back to back; 0 for none),
# BENCH_RUNS (10 latency runs per path), BENCH_QUIET_RUNS (5 runs of path (a) after
# 11 s without traffic), BENCH_PPS (150000),
# BENCH_FLOOD_S (10), BENCH_IDLE_S (10 s per window), BENCH_GEN_NICE (-10: the
# generator runs in its own scheduler autogroup at this nice level, so that other load
# on the machine does not cap the offered rate; empty to leave it alone).
#
# Only lab addresses are used; everything runs in the lab's namespaces, is bounded in
# time, and the lab is torn down on exit (also on failure).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
if [ "${1:-}" = --vm ]; then
  # The capture section on a router-class CPU, in the test VM: bench/hub-vm.sh.
  exec bash "$here/hub-vm.sh" "${2:-mipsel}"
fi
. "$root/tests/lab/lab.sh"
. "$root/tests/lab/many.sh"
. "$root/tests/e2e/agent.sh"

RUNS=${BENCH_RUNS:-10}
QUIET_RUNS=${BENCH_QUIET_RUNS:-5}
PPS=${BENCH_PPS:-150000}
FLOOD_S=${BENCH_FLOOD_S:-10}
IDLE_S=${BENCH_IDLE_S:-10}
GEN_NICE=${BENCH_GEN_NICE--10}
BASE_BIN=${BENCH_BASE_BIN:-}
OUT_DIR=$root/target/bench
REPORT=$OUT_DIR/hub-latest.md
TCPDUMP_FILTER='udp dst port 51820 and udp[8] = 1 and udp[4:2] = 156'

[ -z "$BASE_BIN" ] || [ -x "$BASE_BIN" ] || { echo "bench: BENCH_BASE_BIN=$BASE_BIN is not executable" >&2; exit 2; }
for v in RUNS QUIET_RUNS PPS FLOOD_S IDLE_S; do
  case "${!v}" in '' | *[!0-9]* | 0) echo "bench: BENCH_$v must be a positive integer" >&2; exit 2 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "bench: must run as root" >&2; exit 1; }
for c in jq python3 cc strace tcpdump conntrack; do
  command -v "$c" >/dev/null || { echo "bench: '$c' missing (run scripts/install-deps.sh)" >&2; exit 1; }
done
agent_bin >/dev/null
agent_uci_bin >/dev/null

cleanup() {
  many_down
  lab_down
}
trap cleanup EXIT

T0=$(agent_ms)
note() { printf '[%5.1f s] %s\n' "$(awk -v ms=$(($(agent_ms) - T0)) 'BEGIN { print ms / 1000 }')" "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

mkdir -p "$OUT_DIR"
cc -O2 -Wall -Wextra -o "$OUT_DIR/flood" "$here/flood.c" || die "cannot compile bench/flood.c"

# --- process measurements -------------------------------------------------------

# cpu_ns PID: CPU time of all threads of PID in ns (schedstat).
cpu_ns() {
  local f sum=0 v
  for f in /proc/"$1"/task/*/schedstat; do
    read -r v _ <"$f" || continue
    sum=$((sum + v))
  done
  echo "$sum"
}

# ticks PID: utime + stime of PID (all threads) in clock ticks.
ticks() {
  local s
  s=$(cat "/proc/$1/stat")
  s=${s##*) }
  # After "comm) ": state is field 3; utime 14, stime 15 -> index 11 and 12.
  local -a f
  read -r -a f <<<"$s"
  echo $((f[11] + f[12]))
}

# ctxsw PID: voluntary and involuntary context switches of all threads ("V N").
ctxsw() {
  awk '/^voluntary_ctxt_switches/ { v += $2 } /^nonvoluntary_ctxt_switches/ { n += $2 }
       END { print v + 0, n + 0 }' /proc/"$1"/task/*/status
}

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

HZ=$(getconf CLK_TCK)
ms_of_ns() { awk -v n="$1" 'BEGIN { printf "%.1f", n / 1e6 }'; }
s_of_ticks() { awk -v t="$1" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }'; }

# --- agent ------------------------------------------------------------------------

# restart_agent [AGENT_OPTIONS...]: stops the hub agent (if running) and starts it
# again with r1's network config plus the options.
restart_agent() {
  if [ -e "$LAB_DIR/pids/agent-r2.pid" ]; then lab_stop agent-r2; fi
  rm -f "$LAB_DIR/r2/run/status.json"
  agent_hub_setup "$@"
  if [ -s "$LAB_DIR/extra-peers.uci" ]; then
    cat "$LAB_DIR/extra-peers.uci" >>"$LAB_DIR/r2/etc/network"
  fi
  agent_hub_start
}

peer_count() { agent_hub_status | jq '[.interfaces[0].peers[]] | length'; }
peer_count_is() { [ "$(peer_count)" = "$1" ]; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# ----------------------------------------------------------------------------------
lab_up >&2
T_LAB=$(agent_ms)
restart_agent
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || die "no tunnel at start"
lab_wait_for 3 agent_hub_endpoint_is "$LAB_NAT_OUT4:$(lab_nat_port_of_r1)" || die "agent did not learn r1"
note "lab up, hub agent running, r1 handshaked"

# === 1. detection latency ==========================================================
stats() { # JSON from latency.py on stdin -> "n median p90 max min whys"
  python3 -c '
import json, sys
d = json.load(sys.stdin)
ms = sorted(r["ms"] for r in d["runs"])
n = len(ms)
def q(p):
    return ms[min(n - 1, int(round(p * (n - 1))))]
med = (ms[(n - 1) // 2] + ms[n // 2]) / 2
whys = {}
for r in d["runs"]:
    whys[r["why"]] = whys.get(r["why"], 0) + 1
print(n, "%.1f" % med, "%.1f" % q(0.9), "%.1f" % ms[-1], "%.1f" % ms[0],
      ",".join("%s:%d" % kv for kv in sorted(whys.items())), d["retries"])'
}

declare -A LAT
# kernel@quiet: path (a) after 11 s without traffic (past the hub's 10 s hot window:
# the hub is quiet and reads WireGuard when the captured packet wakes it).
for mode in kernel initiation kernel@quiet; do
  settle=0 runs=$RUNS
  if [ "$mode" = kernel@quiet ]; then settle=11 runs=$QUIET_RUNS; fi
  json=$(python3 "$here/latency.py" "${mode%@*}" "$runs" "$LAB_DIR/r2/run/status.json" \
    "$(lab_r1_pubkey)" "$(lab_r2_pubkey)" "$settle") || die "latency ($mode) failed: $json"
  echo "$json" >"$OUT_DIR/latency-${mode/@/-}.json"
  LAT[$mode]=$(stats <<<"$json")
  note "latency $mode: n median p90 max min = ${LAT[$mode]}"
done

# === 2. idle ========================================================================
# wait_quiet PID: waits (30 s at most) until 3 s pass in which PID does not wake;
# prints the seconds waited.
wait_quiet() {
  local v0 v1 n0 n1 t=0
  while [ "$t" -lt 30 ]; do
    read -r v0 n0 < <(ctxsw "$1")
    sleep 3
    read -r v1 n1 < <(ctxsw "$1")
    [ "$v0" = "$v1" ] && break
    t=$((t + 3))
  done
  echo "$t"
}
declare -A IDLE
IDLE_ROWS=(500 1000 2000)
# The agent of $BENCH_BASE_BIN at poll_ms 500: the idle baseline of the same run.
[ -z "$BASE_BIN" ] || IDLE_ROWS+=(500@main)
for row in "${IDLE_ROWS[@]}"; do
  poll=${row%@*}
  if [ "$row" = 500@main ]; then
    WGROAM_BIN=$BASE_BIN restart_agent "option poll_ms '$poll'"
  else
    restart_agent "option poll_ms '$poll'"
  fi
  pid=$(agent_hub_pid)
  # Past the hot window after a start (10 s at poll_ms): the idle hub is quiet,
  # once the tunnel is (the latency section's sessions can still be talking):
  # up to 30 s more, until 3 s pass without the agent waking.
  sleep 12
  waited=$(wait_quiet "$pid")
  c0=$(cpu_ns "$pid") t0=$(ticks "$pid")
  read -r v0 n0 < <(ctxsw "$pid")
  sleep "$IDLE_S"
  c1=$(cpu_ns "$pid") t1=$(ticks "$pid")
  read -r v1 n1 < <(ctxsw "$pid")
  # Syscalls in a separate window: ptrace itself adds context switches.
  timeout -s INT "$IDLE_S" strace -c -f -p "$pid" -o "$OUT_DIR/strace-idle-$row.txt" 2>/dev/null || true
  calls=$(awk '$NF == "total" { print $4 }' "$OUT_DIR/strace-idle-$row.txt")
  # Returns from the event loop's poll(2) (restart_syscall: the one strace interrupted).
  loops=$(awk '$NF == "poll" || $NF == "ppoll" || $NF == "restart_syscall" { s += $4 } END { print s + 0 }' \
    "$OUT_DIR/strace-idle-$row.txt")
  top=$(awk 'NR > 2 && $1 ~ /^[0-9.]+$/ && $NF != "total" { print $4, $NF }' \
    "$OUT_DIR/strace-idle-$row.txt" | sort -rn | head -n 6 |
    awk -v w="$IDLE_S" '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1 * 60 / w }')
  IDLE[$row]="$(awk -v l="$loops" -v w="$IDLE_S" 'BEGIN { printf "%.2f", l / w }') \
$(awk -v a="$v0" -v b="$v1" -v w="$IDLE_S" 'BEGIN { printf "%.2f", (b - a) / w }') \
$(awk -v a="$n0" -v b="$n1" -v w="$IDLE_S" 'BEGIN { printf "%.2f", (b - a) / w }') \
$(awk -v c="${calls:-0}" -v w="$IDLE_S" 'BEGIN { printf "%d", c * 60 / w }') \
$(awk -v a="$c0" -v b="$c1" -v w="$IDLE_S" 'BEGIN { printf "%.1f", (b - a) / 1e6 * 60 / w }') \
$(awk -v a="$t0" -v b="$t1" -v w="$IDLE_S" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz * 60 / w }')|$top"
  note "idle poll_ms $row (waited ${waited} s for quiet): ${IDLE[$row]}"
done
restart_agent

# === 3. capture cost ===============================================================
# r2 drops the flood in netfilter (raw prerouting) so that it neither answers it
# (RST, ICMP) nor feeds it to wireguard-go; packet sockets see every frame before
# netfilter, so the capture filters still run on all of it.
lab_exec r2 nft -f - <<'EOF'
table ip wgr_bench {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    ip saddr 198.51.100.1 udp sport 20000-20255 drop
    ip saddr 198.51.100.1 tcp sport 33000-33255 drop
    ip saddr 203.0.113.0/24 udp dport 51820 drop
  }
}
EOF
rx_packets() { lab_exec r2 cat /sys/class/net/wan/statistics/rx_packets; }

# 256 initiation-shaped payloads with a VALID mac1 for r2's key (what anyone who knows
# the hub's public key can send): they pass mac1 and reach the verifier's token bucket.
python3 - "$(lab_r2_pubkey)" "$OUT_DIR/mac1-garbage.bin" <<'PY'
import base64, hashlib, os, sys
pub = base64.b64decode(sys.argv[1])
key = hashlib.blake2s(b"mac1----" + pub).digest()
with open(sys.argv[2], "wb") as f:
    for _ in range(256):
        body = b"\x01\x00\x00\x00" + os.urandom(112)
        f.write(body + hashlib.blake2s(body, digest_size=16, key=key).digest() + bytes(16))
PY

# gen KIND [PPS]: runs the generator for FLOOD_S s; prints "achieved_pps gen_cpu_s".
# KIND mac1 is spoofed with the valid-mac1 payloads.
gen() {
  local kind=$1 rate=${2:-$PPS} out tf=$OUT_DIR/gen-time.txt payloads=
  if [ "$kind" = mac1 ]; then kind=spoofed payloads=$OUT_DIR/mac1-garbage.bin; fi
  local cmd=(ip netns exec wgr-inet env FLOOD_PAYLOADS="$payloads" "$OUT_DIR/flood" "$LAB_INET4" "$LAB_R2_WAN4" "$rate" "$FLOOD_S" "$kind")
  local TIMEFORMAT='%U %S'
  if [ -n "$GEN_NICE" ]; then
    # shellcheck disable=SC2016 # $0/$@ belong to the inner sh
    { time out=$(setsid sh -c 'echo "$0" >/proc/self/autogroup 2>/dev/null || true; exec "$@"' \
      "$GEN_NICE" "${cmd[@]}"); } 2>"$tf"
  else
    { time out=$("${cmd[@]}"); } 2>"$tf"
  fi
  echo "$out" >&2
  # "sent N packets in S s: P pps (E send errors)"
  echo "$(awk '{ print $7 }' <<<"$out") $(awk '{ printf "%.2f", $1 + $2 }' "$tf")"
}

agent_seen() { # "handled dropped": packets the agent classified, and those its socket queue lost
  agent_hub_status | jq -r '"\([.interfaces[0].ignored // {} | .[]] | add // 0) \(.interfaces[0].capture_drops // 0)"'
}

declare -A CPU_MS HANDLED
# phase NAME KIND WHO(none|agent|main|tcpdump) [PPS]: one flood window; sets ROW and
# CPU_MS/HANDLED[WHO:KIND:PPS]. "main" is the agent of $BENCH_BASE_BIN (running).
phase() {
  local name=$1 kind=$2 who=$3 rate=${4:-$PPS} pid="" c0 c1 t0 t1 v0 v1 n0 n1 rx0 rx1 s0 s1 seen="" g
  case "$who" in
  agent | main) pid=$(agent_hub_pid) ;;
  tcpdump)
    lab_spawn tcpdump-bench r2 tcpdump -n -i wan -w /dev/null "$TCPDUMP_FILTER"
    lab_wait_for 5 grep -q "listening on" "$(lab_log tcpdump-bench)" || die "tcpdump did not start"
    pid=$(lab_pid tcpdump-bench)
    ;;
  esac
  [ "$who" != tcpdump ] && [ -n "$pid" ] && s0=$(agent_seen)
  if [ -n "$pid" ]; then
    c0=$(cpu_ns "$pid") t0=$(ticks "$pid")
    read -r v0 n0 < <(ctxsw "$pid")
  fi
  rx0=$(rx_packets)
  local w0 w1
  w0=$(agent_ms)
  g=$(gen "$kind" "$rate")
  w1=$(agent_ms)
  rx1=$(rx_packets)
  local rss=""
  if [ -n "$pid" ]; then
    c1=$(cpu_ns "$pid") t1=$(ticks "$pid")
    read -r v1 n1 < <(ctxsw "$pid")
    rss=$(status_kib "$pid" VmRSS)
  fi
  local handled=0 per="-"
  case "$who" in
  agent | main)
    sleep 5.2 # counters reach the status file within 5 s
    s1=$(agent_seen)
    handled=$((${s1% *} - ${s0% *}))
    seen="$handled ($((${s1#* } - ${s0#* })) dropped)"
    ;;
  tcpdump)
    lab_stop tcpdump-bench
    handled=$(awk '/packets received by filter/ { print $1 }' "$(lab_log tcpdump-bench)")
    local dropped
    dropped=$(awk '/packets dropped by kernel/ { print $1 }' "$(lab_log tcpdump-bench)")
    seen="${handled:-?} (${dropped:-?} dropped)"
    ;;
  esac
  if [ -n "$pid" ] && [ "${handled:-0}" -gt 0 ] 2>/dev/null; then
    per=$(awk -v ns=$((c1 - c0)) -v n="$handled" 'BEGIN { printf "%.2f", ns / 1000 / n }')
  fi
  local achieved=${g%% *} gcpu=${g##* } rxpps share arriving
  rxpps=$(awk -v a="$rx0" -v b="$rx1" -v ms=$((w1 - w0)) 'BEGIN { printf "%d", (b - a) / (ms / 1000) }')
  if [ -n "$pid" ]; then
    share=$(awk -v ns=$((c1 - c0)) -v ms=$((w1 - w0)) 'BEGIN { printf "%.1f", ns / 1e6 / ms * 100 }')
    arriving=$(awk -v ns=$((c1 - c0)) -v n=$((rx1 - rx0)) 'BEGIN { printf "%.3f", (n > 0 ? ns / 1000 / n : 0) }')
    CPU_MS[$who:$kind:$rate]=$(ms_of_ns $((c1 - c0)))
    HANDLED[$who:$kind:$rate]=${handled:-0}
    local label=$who
    [ "$who" = main ] && label="agent of main (BENCH_BASE_BIN)"
    ROW="| $name | $achieved / $rxpps | $label | $(ms_of_ns $((c1 - c0))) | $share | $(s_of_ticks $((t1 - t0))) | $(((v1 - v0) + (n1 - n0))) | ${seen:--} | $per | $arriving | ${rss:-?} | $gcpu |"
  else
    ROW="| $name | $achieved / $rxpps | none (baseline) | - | - | - | - | - | - | - | - | $gcpu |"
  fi
  note "capture $name / $who: $ROW"
}

OTHER="other UDP/TCP (not to 51820)"
JUNK="initiation-shaped junk (type 1, 148 B, bad mac1), 256 sources"
SPOOF="initiation-shaped junk, every packet from a new source (203.0.113.0/24 x ports)"
MAC1="initiation-shaped garbage with a VALID mac1, every packet from a new source"
LOW="initiation-shaped junk, 256 sources, below the agent's frame budget"
LOW_PPS=${BENCH_LOW_PPS:-4000}
LOW_PAIRS=${BENCH_LOW_PAIRS:-4}
case "$LOW_PAIRS" in '' | *[!0-9]*) die "BENCH_LOW_PAIRS must be a number (0 for none)" ;; esac
CAP=()
phase "$OTHER" other agent; CAP+=("$ROW")
phase "$JUNK" wgjunk agent; CAP+=("$ROW")
phase "$SPOOF" spoofed agent; CAP+=("$ROW")
phase "$MAC1" mac1 agent; CAP+=("$ROW")
phase "$LOW" wgjunk agent "$LOW_PPS"; CAP+=("$ROW")
if [ -n "$BASE_BIN" ]; then
  WGROAM_BIN=$BASE_BIN restart_agent
  phase "$JUNK" wgjunk main; CAP+=("$ROW")
  phase "$SPOOF" spoofed main; CAP+=("$ROW")
  phase "$LOW" wgjunk main "$LOW_PPS"; CAP+=("$ROW")
fi
lab_stop agent-r2
phase "$OTHER" other none; CAP+=("$ROW")
phase "$OTHER" other tcpdump; CAP+=("$ROW")
phase "$JUNK" wgjunk tcpdump; CAP+=("$ROW")
phase "$SPOOF" spoofed tcpdump; CAP+=("$ROW")
phase "$MAC1" mac1 tcpdump; CAP+=("$ROW")
phase "$LOW" wgjunk tcpdump "$LOW_PPS"; CAP+=("$ROW")
# The ratio below the frame budget, again in LOW_PAIRS pairs back to back (a fresh
# agent, quiet, its window, then tcpdump's): the single pair above is minutes apart
# and moves by a fifth between runs here.
LOW_KEY=wgjunk:$LOW_PPS
MAIN_LOW="${CPU_MS[agent:$LOW_KEY]:-} ${HANDLED[agent:$LOW_KEY]:-0} ${CPU_MS[tcpdump:$LOW_KEY]:-} ${HANDLED[tcpdump:$LOW_KEY]:-0}"
PAIRS=("$MAIN_LOW")
for _ in $(seq "$LOW_PAIRS"); do
  restart_agent
  wait_quiet "$(agent_hub_pid)" >/dev/null
  phase "$LOW" wgjunk agent "$LOW_PPS"
  lab_stop agent-r2
  phase "$LOW" wgjunk tcpdump "$LOW_PPS"
  PAIRS+=("${CPU_MS[agent:$LOW_KEY]} ${HANDLED[agent:$LOW_KEY]} ${CPU_MS[tcpdump:$LOW_KEY]} ${HANDLED[tcpdump:$LOW_KEY]}")
done
read -r CPU_MS[agent:$LOW_KEY] HANDLED[agent:$LOW_KEY] CPU_MS[tcpdump:$LOW_KEY] HANDLED[tcpdump:$LOW_KEY] <<<"$MAIN_LOW"
lab_exec r2 nft delete table ip wgr_bench

# === 4. mass move ==================================================================
MANY_N=50
many_up "$MANY_N" >&2
: >"$LAB_DIR/extra-peers.uci"
for ((i = 0; i < MANY_N; i++)); do
  printf "\nconfig wireguard_wg0\n\toption public_key '%s'\n\tlist allowed_ips '%s/128'\n" \
    "$(many_pubkey "$i")" "$(many_addr6 "$i")" >>"$LAB_DIR/extra-peers.uci"
done
restart_agent
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || die "r1: no tunnel"
failed_peers=$(many_send 3) || die "peers whose ping failed: $failed_peers"
all_known() { [ "$(agent_hub_status | jq '[.interfaces[0].peers[] | select(.endpoint != null)] | length')" = $((MANY_N + 1)) ]; }
lab_wait_for 5 all_known || die "agent does not know all $((MANY_N + 1)) endpoints"
addrs=()
for ((i = 0; i < MANY_N; i++)); do addrs+=("$(many_addr6 "$i")"); done
json=$(python3 "$here/mass.py" 3 "$LAB_DIR/r2/run/status.json" "$LAB_DIR/r2/save/network" "${addrs[@]}") ||
  die "mass move failed: $json"
echo "$json" >"$OUT_DIR/mass.json"
MASS=$(python3 -c '
import json, statistics, sys
d = json.load(sys.stdin)["runs"]
f = lambda k: statistics.median(r[k] for r in d)
span = statistics.median(r["last_stage"] - r["first_stage"] for r in d)
print(len(d), "%.0f" % f("first_stage"), "%.0f" % f("last_stage"), "%.0f" % f("visible"),
      "%.0f" % span, "%.1f" % (span / (d[0]["moved"] - 1)), d[0]["moved"])' <<<"$json")
note "mass move: runs first last visible span per_peer moved = $MASS"
for ((i = 0; i < MANY_N; i++)); do lab_exec r2 wg set wg0 peer "$(many_pubkey "$i")" remove; done
many_down
: >"$LAB_DIR/extra-peers.uci"

# === 5. memory =====================================================================
# Extra peers: random public keys (nobody needs their private keys), each a /128 in
# 2001:db8:100:3::/64, added to wg0 with `wg addconf` and to uci as sections (every
# fifth named, the rest anonymous).
add_peers() { # FROM TO: peers FROM..TO-1 (numbering of the extra peers)
  python3 - "$1" "$2" "$LAB_DIR/extra-peers.wg" "$LAB_DIR/extra-peers.uci" <<'PY'
import base64, os, sys
a, b = int(sys.argv[1]), int(sys.argv[2])
with open(sys.argv[3], "w") as wg, open(sys.argv[4], "a") as uci:
    for i in range(a, b):
        key = base64.b64encode(os.urandom(32)).decode()
        ip = "2001:db8:100:3::%x/128" % (i + 1)
        wg.write("[Peer]\nPublicKey = %s\nAllowedIPs = %s\n\n" % (key, ip))
        name = " 'extra%d'" % i if i % 5 == 2 else ""
        uci.write("\nconfig wireguard_wg0%s\n\toption public_key '%s'\n\tlist allowed_ips '%s'\n" % (name, key, ip))
PY
  lab_exec r2 wg addconf wg0 "$LAB_DIR/extra-peers.wg"
}

declare -A MEM
: >"$LAB_DIR/extra-peers.uci"
# The mass move staged endpoints of the 50 peers in uci's save dir; without this
# they come back as sections of their own.
rm -f "$LAB_DIR/r2/save/network"
have=1
for n in 1 100 1000 1000@2000; do
  opt=()
  case "$n" in *@*) opt=("option poll_ms '${n#*@}'") ;; esac
  if [ "${n%@*}" -gt "$have" ]; then
    add_peers $((have - 1)) $((${n%@*} - 1))
    have=${n%@*}
  fi
  restart_agent "${opt[@]}"
  pid=$(agent_hub_pid)
  lab_wait_for 10 peer_count_is "${n%@*}" || die "agent shows $(peer_count) peers, expected ${n%@*}"
  sleep 2
  r0=$(status_kib "$pid" VmRSS) c0=$(cpu_ns "$pid")
  sleep 5
  r1=$(status_kib "$pid" VmRSS) c1=$(cpu_ns "$pid")
  hwm=$(status_kib "$pid" VmHWM)
  size=$(stat -c %s "$LAB_DIR/r2/run/status.json")
  MEM[$n]="$r1 $hwm $((r1 - r0)) $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", (b - a) / 1e6 / 5 }') $size"
  note "memory $n peers: rss hwm growth5s cpu_ms_per_s status_bytes = ${MEM[$n]}"
done
# Baseline: tcpdump with the same filter, idle on the same interface.
lab_spawn tcpdump-rss r2 tcpdump -n -i wan -w /dev/null "$TCPDUMP_FILTER"
lab_wait_for 5 grep -q "listening on" "$(lab_log tcpdump-rss)" || die "tcpdump did not start"
sleep 1
TD_RSS="$(status_kib "$(lab_pid tcpdump-rss)" VmRSS) $(status_kib "$(lab_pid tcpdump-rss)" VmHWM)"
lab_stop tcpdump-rss
WGGO_RSS=$(status_kib "$(lab_pid wireguard-go-wg0)" VmRSS)

# === report ========================================================================
# us_per CPU_MS PACKETS: CPU µs per packet (0 without packets).
us_per() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.3f", (n > 0 ? c * 1000 / n : 0) }'; }

report() {
  local row poll n label b
  echo "Machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo),"
  echo "kernel $(uname -r); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg);"
  echo "bench time $(( ($(agent_ms) - T_LAB) / 1000 )) s after lab_up (which waited $(( (T_LAB - T0) / 1000 )) s for the lab);"
  echo "lab state (status file) on $(df -T "$LAB_DIR" | awk 'NR == 2 { print $2 }'); agent $("$(agent_bin)" --version 2>/dev/null | head -n 1)."
  echo
  echo "### Detection latency (r1's packet -> new endpoint in \`wgroam status\`), poll_ms 500"
  echo
  echo "| path | runs | median ms | p90 ms | max ms | min ms | why (agent) | baseline |"
  echo "|---|---|---|---|---|---|---|---|"
  local kmed kmax
  read -r _ kmed _ kmax _ <<<"${LAT[kernel]}"
  read -r n med p90 max min whys _ <<<"${LAT[kernel]}"
  echo "| (a) NAT port change, r1 sends data (kernel roams, agent reads it at its next poll) | $n | $med | $p90 | $max | $min | $whys | poll_ms 500: expected uniform 0..500 ms (median ~250, max ~500) |"
  read -r n med p90 max min whys _ <<<"${LAT[initiation]}"
  echo "| (b) new initiation from a new NAT port (captured and verified at once) | $n | $med | $p90 | $max | $min | $whys | path (a) in this run: median $kmed ms, max $kmax ms (poll-bound) |"
  read -r n med p90 max min whys _ <<<"${LAT[kernel@quiet]}"
  echo "| (a) after 11 s without traffic (hub quiet: the captured packet wakes it, it reads at once) | $n | $med | $p90 | $max | $min | $whys | path (a) in this run while busy: median $kmed ms, max $kmax ms |"
  echo
  echo "### Idle, quiet tunnel (1 peer, no traffic), windows of ${IDLE_S} s"
  echo
  echo "| poll_ms | event-loop wakeups/s (poll(2) returns) | expected (1000/poll_ms) | all sleeps/s (voluntary context switches) | involuntary/s | syscalls/min | CPU ms/min (schedstat) | utime+stime s/min | top syscalls per min |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for row in "${IDLE_ROWS[@]}"; do
    poll=${row%@*}
    label=$poll
    [ "$row" = 500@main ] && label="500, agent of main (BENCH_BASE_BIN)"
    read -r l v n calls cpu tk <<<"${IDLE[$row]%%|*}"
    echo "| $label | $l | $(awk -v p="$poll" 'BEGIN { printf "%.1f", 1000 / p }') | $v | $n | $calls | $cpu | $tk | ${IDLE[$row]#*|} |"
  done
  echo
  echo "Wakeups come from strace's count of poll(2) in the syscall window; the other"
  echo "columns from /proc in a window without strace; both start 12 s after the agent, past"
  echo "its hot window. A quiet hub reads wg0 (here over wireguard-go's UAPI socket, whose"
  echo "replies the agent waits for) every 10 s or when a packet, a link or route event or"
  echo "a deadline says so (the agent of main: every poll); the status file (RAM state dir:"
  echo "no fsync) is rewritten only on a change."
  echo
  echo "### Capture cost: ${FLOOD_S} s floods from the internet host to r2's WAN, target $PPS pps"
  echo
  echo "| traffic | pps achieved (sender / r2 wan rx) | capturing process | its CPU ms (schedstat) | its CPU share of one core % | its utime+stime s | its context switches | packets it handled (dropped: by the kernel, or shed over the agent's frame budget) | its CPU µs per handled packet | its CPU µs per arriving packet | its VmRSS KiB after | sender CPU s (incl. kernel path) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  for row in "${CAP[@]}"; do echo "$row"; done
  echo
  echo "Ratios, same run (agent / tcpdump with the same traffic):"
  echo
  echo "| traffic | pps | agent CPU ms / tcpdump CPU ms | ratio | agent µs per handled packet / tcpdump's | ratio |$([ -n "$BASE_BIN" ] && echo " agent of main: CPU ms, µs per handled packet |")"
  echo "|---|---|---|---|---|---|$([ -n "$BASE_BIN" ] && echo "---|")"
  local k r a tc ah th base
  for k in "wgjunk:$PPS" "spoofed:$PPS" "mac1:$PPS" "wgjunk:$LOW_PPS"; do
    a=${CPU_MS[agent:$k]:-} tc=${CPU_MS[tcpdump:$k]:-}
    ah=${HANDLED[agent:$k]:-0} th=${HANDLED[tcpdump:$k]:-0}
    [ -n "$a" ] && [ -n "$tc" ] || continue
    r=$(awk -v a="$a" -v t="$tc" 'BEGIN { printf "%.2f", (t > 0 ? a / t : 0) }')
    local pa pt pr
    pa=$(us_per "$a" "$ah") pt=$(us_per "$tc" "$th")
    pr=$(awk -v a="$pa" -v t="$pt" 'BEGIN { printf "%.1f", (t > 0 ? a / t : 0) }')
    base=""
    if [ -n "$BASE_BIN" ]; then
      base=" -"
      if [ -n "${CPU_MS[main:$k]:-}" ]; then
        base=" ${CPU_MS[main:$k]} ms, $(us_per "${CPU_MS[main:$k]}" "${HANDLED[main:$k]:-0}") µs |"
      else
        base=" - |"
      fi
    fi
    echo "| ${k%%:*} | ${k#*:} | $a / $tc | $r | $pa / $pt | $pr |$base"
  done
  echo
  echo "The same ratio at $LOW_PPS pps in $((${#PAIRS[@]})) pairs (the first is the pair above; each"
  echo "further one a fresh agent's window, then tcpdump's, back to back):"
  echo
  echo "| pair | agent CPU ms / packets | tcpdump CPU ms / packets | agent µs per packet / tcpdump's | ratio per packet |"
  echo "|---|---|---|---|---|"
  local i=0 ratios=() p
  for p in "${PAIRS[@]}"; do
    i=$((i + 1))
    read -r a ah tc th <<<"$p"
    [ -n "$a" ] && [ -n "$tc" ] || continue
    pa=$(us_per "$a" "$ah") pt=$(us_per "$tc" "$th")
    pr=$(awk -v a="$pa" -v t="$pt" 'BEGIN { printf "%.2f", (t > 0 ? a / t : 0) }')
    ratios+=("$pr")
    echo "| $i | $a / $ah | $tc / $th | $pa / $pt | $pr |"
  done
  echo
  echo "Ratio per packet over the pairs: $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "median %s, min %s, max %s", (NR % 2 ? v[(NR + 1) / 2] : sprintf("%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2)), v[1], v[NR] }')."
  echo
  echo "tcpdump: \`tcpdump -n -i wan -w /dev/null '$TCPDUMP_FILTER'\` (the agent's filter"
  echo "also accepts IPv6 and the hub's own responses). The kernel runs both filters in the"
  echo "receive path, which is charged to the sender here (veth), not to the capturing process."
  read -r _ _ _ _ idle_cpu _ <<<"${IDLE[500]%%|*}"
  echo "The agent's own idle cost in this run (section 2, poll_ms 500): $idle_cpu ms/min, i.e."
  echo "$(awk -v c="$idle_cpu" -v w="$FLOOD_S" 'BEGIN { printf "%.1f", c * w / 60 }') ms per ${FLOOD_S} s window. Packets the agent's socket queue"
  echo "dropped never reach it; a genuine initiation among them falls back to the poll path."
  echo
  echo "### Mass move: every peer gets a new NAT port at once (r1 + $MANY_N peers of tests/lab/many.sh), poll_ms 500"
  echo
  echo "| peers moving | runs | first uci write, ms after the packets (median) | last uci write ms | all visible in status ms | staging span ms | per peer ms | baseline |"
  echo "|---|---|---|---|---|---|---|---|"
  read -r mr mf ml mv ms mp mm <<<"$MASS"
  echo "| $mm | $mr | $mf | $ml | $mv | $ms | $mp | one peer, path (a) in this run: median $(awk '{ print $2 }' <<<"${LAT[kernel]}") ms to visible |"
  echo
  echo "All moves one loop turn sees go into one \`uci batch\` (one \`uci export\` to plan it);"
  echo "the status file, and the next capture read or poll, wait until they are staged."
  echo
  echo "### Memory of the hub agent (peers in wg0 and in uci \`network\`)"
  echo
  echo "| peers | VmRSS KiB | VmHWM KiB | RSS growth over 5 s KiB | CPU ms/s at idle (polls) | status.json bytes | baseline |"
  echo "|---|---|---|---|---|---|---|"
  local base=${MEM[1]%% *}
  for n in 1 100 1000 1000@2000; do
    read -r rss hwm grow cpu size <<<"${MEM[$n]}"
    case "$n" in
    1) b="tcpdump (same filter, idle): VmRSS ${TD_RSS% *}, VmHWM ${TD_RSS#* }; wireguard-go wg0: VmRSS $WGGO_RSS" ;;
    *@*) b="the same 1000 peers at poll_ms 500: CPU $(awk '{ print $4 }' <<<"${MEM[1000]}") ms/s" ;;
    *) b="vs 1 peer: +$((rss - base)) KiB ($(awk -v d=$((rss - base)) -v n=$((n - 1)) 'BEGIN { printf "%.0f", d * 1024 / n }') B/peer)" ;;
    esac
    label=$n
    case "$n" in *@*) label="${n%@*}, poll_ms ${n#*@}" ;; esac
    echo "| $label | $rss | $hwm | $grow | $cpu | $size | $b |"
  done
}

report | tee "$REPORT"
note "done; report in $REPORT"
