#!/usr/bin/env bash
# Instructions per captured junk packet, counted by valgrind's callgrind: the hub
# agent, an agent of another build ($BENCH_BASE_BIN) and tcpdump with the same
# filter, in the same run, each alone on r2's WAN while the internet host sends
# initiation-shaped junk (bad mac1, 256 sources) at $BENCH_INSTR_PPS for
# $BENCH_INSTR_S seconds. Unlike CPU time (bench/hub.sh's capture table), an
# instruction count does not move with the machine's load or its caches, so it
# shows what a change to the capture path costs even where CPU time is noise; it
# does not show cache misses, which are most of tcpdump's cost and little of
# the agent's.
#
#   bash bench/capture-instr.sh        # as root; about 2 minutes (3 with a base)
#
# For each process: the instructions of a window with the flood minus those of an
# equally long window without (timers, status), divided by the packets the
# process took in (the agent: its `ignored` counters; tcpdump: "received by
# filter"). Needs valgrind, tcpdump, jq, cc, the agent and the uci tool (as
# bench/hub.sh). A build with symbols (CARGO_PROFILE_RELEASE_STRIP=false
# CARGO_PROFILE_RELEASE_DEBUG=1) adds the share of BLAKE2s (mac1) to the table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$root/tests/lab/lab.sh"
. "$root/tests/e2e/agent.sh"

PPS=${BENCH_INSTR_PPS:-2000}
SECS=${BENCH_INSTR_S:-10}
BASE_BIN=${BENCH_BASE_BIN:-}
OUT_DIR=$root/target/bench
REPORT=$OUT_DIR/capture-instr-latest.md
TCPDUMP_FILTER='udp dst port 51820 and udp[8] = 1 and udp[4:2] = 156'

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
for v in PPS SECS; do
  case "${!v}" in '' | *[!0-9]* | 0) die "BENCH_INSTR_$v must be a positive integer" ;; esac
done
[ -z "$BASE_BIN" ] || [ -x "$BASE_BIN" ] || die "BENCH_BASE_BIN=$BASE_BIN is not executable"
for c in valgrind callgrind_control tcpdump jq cc; do
  command -v "$c" >/dev/null || die "'$c' missing (apt-get install valgrind; scripts/install-deps.sh)"
done
agent_bin >/dev/null
agent_uci_bin >/dev/null

trap lab_down EXIT
mkdir -p "$OUT_DIR"
cc -O2 -Wall -Wextra -o "$OUT_DIR/flood" "$here/flood.c" || die "cannot compile bench/flood.c"
lab_up >&2

# total FILE: the instruction count of a callgrind dump.
total() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

# window N FLOOD(0|1): zeroes PID's counters, waits SECS (flooding or not) plus 2 s
# to drain, dumps; prints the instructions of the window.
window() {
  local pid=$1 n=$2 flood=$3 out=$CG_OUT.$4
  callgrind_control -z "$pid" >/dev/null
  if [ "$flood" = 1 ]; then
    ip netns exec wgr-inet "$OUT_DIR/flood" "$LAB_INET4" "$LAB_R2_WAN4" "$PPS" "$SECS" wgjunk >&2
  else
    sleep "$SECS"
  fi
  sleep 2
  callgrind_control -d "$pid" >/dev/null
  # The dump is written by the traced process itself: wait for it.
  lab_wait_for 10 test -s "$CG_OUT.$n" || die "no callgrind dump $CG_OUT.$n"
  total "$CG_OUT.$n"
  cp "$CG_OUT.$n" "$out"
}

# blake2 FILE: instructions in BLAKE2s functions, the crate's and the mac1 lanes'
# (src/wire/lanes.rs) (0 without symbols).
blake2() {
  # A function is named once, at its first fn= or cfn=, then "(id)" alone; a
  # cost line right after calls= is the callee's inclusive cost.
  awk '/^c?fn=/ { id = $1; sub(/^c?fn=/, "", id); sub(/\).*/, ")", id); if ($0 ~ /\) /) name[id] = $0 }
       /^cfn=/ { next }
       /^fn=/ { on = (name[id] ~ /blake2|Blake2s|wire::lanes::/); next }
       /^calls=/ { skip = 1; next }
       /^[0-9+*-]/ { if (on && !skip) s += $2; skip = 0; next }
       { skip = 0 }
       END { print s + 0 }' "$1"
}

agent_seen() { agent_hub_status | jq -r '[.interfaces[0].ignored // {} | .[]] | add // 0'; }

ROWS=()
# measure LABEL KIND BIN: one process under callgrind, an idle and a flood window.
measure() {
  local label=$1 kind=$2 bin=${3:-} pid idle busy got n0 n1 per share="-"
  CG_OUT=$OUT_DIR/callgrind-$kind
  rm -f "$CG_OUT"*
  case "$kind" in
  tcpdump)
    # -Z root: tcpdump keeps its user, so callgrind_control may reach it.
    lab_spawn instr-tcpdump r2 valgrind --tool=callgrind --callgrind-out-file="$CG_OUT" \
      tcpdump -Z root -n -i wan -w /dev/null "$TCPDUMP_FILTER"
    lab_wait_for 60 grep -q "listening on" "$(lab_log instr-tcpdump)" || die "tcpdump did not start"
    pid=$(lab_pid instr-tcpdump)
    ;;
  *)
    rm -f "$LAB_DIR/r2/run/status.json"
    agent_hub_setup
    local d=$LAB_DIR/r2
    lab_spawn agent-r2 r2 env WGROAM_UCI_BIN="$(agent_uci_bin)" valgrind --tool=callgrind \
      --callgrind-out-file="$CG_OUT" "$bin" run --config "$d/wgroam.conf" --stderr \
      --uci-confdir "$d/etc" --uci-savedir "$d/save"
    lab_wait_for 60 test -s "$d/run/status.json" || die "$label did not write status"
    sleep 5
    pid=$(agent_hub_pid)
    ;;
  esac
  idle=$(window "$pid" 1 0 idle)
  [ "$kind" = tcpdump ] || n0=$(agent_seen)
  busy=$(window "$pid" 2 1 busy)
  case "$kind" in
  tcpdump)
    lab_stop instr-tcpdump
    got=$(awk '/packets received by filter/ { print $1 }' "$(lab_log instr-tcpdump)")
    ;;
  *)
    sleep 4 # the counters reach the status file within 5 s
    n1=$(agent_seen)
    got=$((n1 - n0))
    lab_stop agent-r2
    ;;
  esac
  [ "${got:-0}" -gt 0 ] || die "$label took in no packets"
  per=$(((busy - idle) / got))
  local b
  b=$(blake2 "$CG_OUT.busy")
  [ "$b" -gt 0 ] && share=$(awk -v b="$b" -v t="$busy" 'BEGIN { printf "%.0f %%", b / t * 100 }')
  PER[$kind]=$per
  ROWS+=("| $label | $got | $idle | $busy | **$per** | RATIO:$kind | $share |")
  echo "instr: $label: $got packets, idle $idle, busy $busy, $per per packet" >&2
}

declare -A PER
measure "agent ($(agent_bin))" agent "$(agent_bin)"
[ -z "$BASE_BIN" ] || measure "agent of BENCH_BASE_BIN ($BASE_BIN)" base "$BASE_BIN"
measure "tcpdump, same filter" tcpdump

{
  echo "### Instructions per captured junk packet (callgrind), $PPS pps for $SECS s"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'); $(nproc) cores, $(uname -r)."
  echo
  echo "| process | packets taken in | instructions, ${SECS}+2 s idle | instructions, ${SECS}+2 s flood | per packet (flood - idle) | x tcpdump | BLAKE2s share of the flood window |"
  echo "|---|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do
    kind=${r##*RATIO:}
    kind=${kind%% *}
    ratio=$(awk -v a="${PER[$kind]}" -v b="${PER[tcpdump]}" 'BEGIN { printf "%.2f", a / b }')
    echo "${r/RATIO:$kind/$ratio}"
  done
} | tee "$REPORT"
