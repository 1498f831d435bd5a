#!/usr/bin/env bash
# Recovery-time benchmark (issues 5 and 7): how long inbound IPv6 from the internet
# host to the LAN client stays broken after each kind of breakage, with wgroam and
# with the baselines, all measured in this run on the same lab.
#
#   bash bench/recovery.sh [RUNS] [CAP_S]      (defaults: 5 runs, 30 s cap)
#
# Scenarios:
#   uplink   r1's WAN address changes behind the NAT (new NAT mapping)
#   rebind   the NAT silently forgets r1's mapping; traffic is inbound only
#   restart  r2's WireGuard link is re-created with the stale endpoint (as netifd
#            re-applies uci) while r1's mapping moved; timed from r1's next packet
# Setups:
#   wgroam       hub agent on r2 + roam agent on r1 (keepalive off, heartbeat 5 s)
#   ka25         no agents, persistent keepalive 25 s on r1
#   ka-off       no agents, no keepalive
#   sniff-once   no agents, no keepalive; a reconfig_wg.sh-style one-shot sniffer
#                on r2, armed right before the breakage: tcpdump one packet to
#                the port, `wg set` that source, done
# Agent-off uplink changes use the lab's kernel-like uplink change (endpoint re-set
# so wireguard-go drops its cached source, as kernel WireGuard does by itself); the
# wgroam runs use --raw, leaving that to the agent. A run that has not recovered
# after CAP_S seconds counts as "> CAP". Prints one table; median and max per cell.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
RUNS=${1:-5}
CAP=${2:-30}
. tests/lab/lab.sh
. tests/e2e/agent.sh
trap lab_down EXIT
export WGROAM_UCI_BIN=${WGROAM_UCI_BIN:-$(bash tests/tools/build-uci.sh | tail -n 1)}
if [ -z "${WGROAM_BIN:-}" ]; then
  cargo build --release --quiet --target x86_64-unknown-linux-musl
  export WGROAM_BIN=$root/target/x86_64-unknown-linux-musl/release/wgroam
fi

# Inbound target: the LAN client's static address (agent-off setups have no RA).
TARGET=$LAB_LAN6

# measure: ms until inet reaches the LAN client, from now; CAP*1000+1 if never.
measure() {
  local start deadline
  start=$(agent_ms)
  deadline=$((start + CAP * 1000))
  until ping_ok inet "$TARGET"; do
    if [ "$(agent_ms)" -ge "$deadline" ]; then
      echo $((CAP * 1000 + 1))
      return
    fi
  done
  echo $(($(agent_ms) - start))
}

setup() { # setup SETUP
  case "$1" in
  wgroam)
    lab_up off >/dev/null
    agent_hub_setup
    agent_hub_start
    agent_roam_setup "option delegate 'off'"
    agent_roam_start
    ;;
  ka25) lab_up 25 >/dev/null ;;
  ka-off | sniff-once) lab_up off >/dev/null ;;
  esac
  lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null
  lab_wait_for 5 ping_ok inet "$TARGET"
  # A settled tunnel: breakage comes long after the start in real life, not while
  # the roam agent's first handshake (and WireGuard's follow-ups) are in flight.
  # Then a random 0-5 s more, so that the breakage falls at a random phase of the
  # 5 s heartbeat and of WireGuard's own timers (a fixed delay would measure one
  # phase only).
  sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f", 1.5 + (r % 5000) / 1000 }')"
}

sniff_once() { # the old script's core: one packet, then set the endpoint
  local src
  src=$(lab_exec r2 timeout "$CAP" tcpdump -c1 -n -l -i wan "udp dst port $LAB_R2_PORT" 2>/dev/null |
    awk '{ print $3 }' | sed -E 's/\.([0-9]+)$/:\1/')
  [ -n "$src" ] && lab_exec r2 wg set wg0 peer "$(lab_r1_pubkey)" endpoint "$src"
}

# Memory of both agents after each wgroam run (VmRSS and VmHWM, kB).
MEM_LOG=$(mktemp)
note_mem() {
  local who pid
  for who in r2 r1; do
    pid=$(lab_pid "agent-$who" 2>/dev/null) || continue
    awk -v who="$who" '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print who, r, h }' \
      "/proc/$pid/status" >>"$MEM_LOG" 2>/dev/null || true
  done
}

# sniffer_for SETUP: with sniff-once, arms the one-shot sniffer on r2 now.
sniffer_for() {
  [ "$1" = sniff-once ] || return 0
  sniff_once &
  sleep 0.3
}

run_one() { # run_one SCENARIO SETUP -> ms
  local sc=$1 su=$2 p1 ms
  setup "$su"
  ms=$(run_scenario "$sc" "$su")
  [ "$su" = wgroam ] && note_mem
  lab_down --keep-owner >/dev/null
  echo "$ms"
}

run_scenario() { # run_scenario SCENARIO SETUP -> ms
  local sc=$1 su=$2 p1
  case "$sc" in
  uplink)
    sniffer_for "$su"
    if [ "$su" = wgroam ]; then lab_uplink_change --raw >/dev/null; else lab_uplink_change >/dev/null; fi
    measure
    ;;
  rebind)
    sniffer_for "$su"
    lab_nat_rebind
    measure
    ;;
  restart)
    p1=$(lab_nat_port_of_r1)
    lab_r2_wg_stop
    lab_nat_rebind
    lab_r2_wg_start "$LAB_NAT_OUT4:$p1"
    sniffer_for "$su"
    # r1's next packet: data under its old session.
    lab_exec lan ping -6 -c1 -W0.1 "$LAB_INET6" >/dev/null 2>&1 || true
    measure
    ;;
  esac
}

stats() { # median and max of ms values, "> CAP" when capped
  sort -n | awk -v cap=$((CAP * 1000)) '
    function f(x) { return x > cap ? sprintf("> %d s", cap / 1000) : sprintf("%.2f s", x / 1000) }
    { v[NR] = $1 }
    END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s / %s", f(m), f(v[NR]) }'
}

declare -A result
for sc in ${BENCH_SCENARIOS:-uplink rebind restart}; do
  setups=${BENCH_SETUPS:-wgroam sniff-once ka25 ka-off}
  for su in $setups; do
    vals=()
    for _ in $(seq "$RUNS"); do
      vals+=("$(run_one "$sc" "$su")")
    done
    result[$sc/$su]=$(printf '%s\n' "${vals[@]}" | stats)
    echo "  $sc / $su: ${vals[*]} ms -> ${result[$sc/$su]}" >&2
  done
done

echo
echo "Recovery of inbound IPv6 (inet -> LAN client), median / max of $RUNS runs, cap ${CAP} s"
printf '| %-8s | %-17s | %-17s | %-17s | %-17s |\n' scenario wgroam "sniff-once" "keepalive 25" "keepalive off"
printf '|%s|%s|%s|%s|%s|\n' ---------- ------------------- ------------------- ------------------- -------------------
for sc in ${BENCH_SCENARIOS:-uplink rebind restart}; do
  printf '| %-8s | %-17s | %-17s | %-17s | %-17s |\n' "$sc" "${result[$sc/wgroam]}" \
    "${result[$sc/sniff-once]}" "${result[$sc/ka25]}" "${result[$sc/ka-off]}"
done

mem_row() { # mem_row r1|r2: "VmRSS median (min-max) kB, peak VmHWM kB"
  awk -v who="$1" '$1 == who { print $2, $3 }' "$MEM_LOG" | sort -n |
    awk '{ n++; r[n] = $1; if ($2 > h) h = $2 }
      END { if (!n) { print "n/a"; exit }
        printf "VmRSS median %d kB (%d-%d), VmHWM max %d kB, %d samples", r[int((n + 1) / 2)], r[1], r[n], h, n }'
}
echo
echo "Agent memory at the end of the wgroam runs: hub (r2) $(mem_row r2); roam (r1) $(mem_row r1)"
rm -f "$MEM_LOG"
echo
echo "load average at the end: $(cut -d" " -f1-3 /proc/loadavg)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
