#!/usr/bin/env bash
# Fuzzes wgroam's parsers and verifiers with libFuzzer (cargo-fuzz, fuzz/).
#
#   scripts/fuzz.sh [SECONDS]      every target for SECONDS each (default 20)
#   scripts/fuzz.sh --runs N       every target until it has executed N inputs
#   scripts/fuzz.sh --prepare      only install cargo-fuzz and build the targets
#
# FUZZ_TARGETS="wire_parse uci_parse" restricts the targets. Prints one table row
# per target (executions, rate, corpus size, crashes) and exits 1 if any target
# crashed; the crashing input is kept in fuzz/artifacts/TARGET/ and the command to
# replay it is printed. New interesting inputs accumulate in fuzz/corpus/TARGET/
# (git-ignored); seeds come from the test fixtures on every run.
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address);
# the stable toolchain accepts them with RUSTC_BOOTSTRAP=1, which this script
# sets. cargo-fuzz itself is installed (pinned) by scripts/install-deps.sh
# --fuzz-tools, the first time only.
#
# Longer run (>= 10 million executions per target; measured rates in
# fuzz/README.md: minutes for wire_parse and capture_classify, ~35 min for
# config_load, ~1.5 h for uci_parse, ~5 h for handshake_identify):
#
#   scripts/fuzz.sh --runs 10000000
#
# or a time budget per target, e.g. 30 minutes each: scripts/fuzz.sh 1800.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

ALL_TARGETS=(wire_parse handshake_identify uci_parse config_load capture_classify capture_ring)
read -r -a targets <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"

mode="time"
limit=20
case "${1:-}" in
'') ;;
--prepare) mode=prepare ;;
--runs)
  mode=runs
  limit=${2:-}
  ;;
*) limit=$1 ;;
esac
if [ "$mode" != prepare ]; then
  case "$limit" in
  '' | *[!0-9]* | 0)
    echo "usage: $0 [SECONDS] | --runs N | --prepare" >&2
    exit 2
    ;;
  esac
fi

die() {
  echo "fuzz: $*" >&2
  exit 1
}

# The fuzzed code is safe Rust but for the capture ring's reads of its mapping
# and the SSE2 loads of the mac1 lanes (src/wire/lanes.rs, 16 bytes at fixed
# offsets of 148-byte arrays), so a panic is the failure that matters; CI's
# short pass builds without AddressSanitizer (FUZZ_SANITIZER=none, several times
# faster to build), the long run with it.
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}

prepare() {
  local t0=$SECONDS
  bash scripts/install-deps.sh >/dev/null
  bash scripts/install-deps.sh --fuzz-tools
  echo "fuzz: building ${#targets[@]} targets (release, sanitizer $FUZZ_SANITIZER, debug assertions)"
  mkdir -p target
  : >target/fuzz-build.log
  for t in "${targets[@]}"; do
    cargo fuzz build -s "$FUZZ_SANITIZER" "$t" >>target/fuzz-build.log 2>&1 ||
      die "build of $t failed; see target/fuzz-build.log: $(tail -n 5 target/fuzz-build.log)"
  done
  echo "fuzz: ready in $((SECONDS - t0)) s"
}

# unhex FILE > BIN
unhex() { python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(open(sys.argv[1]).read().strip()))' "$1"; }

# seeds TARGET DIR: fills DIR with starting inputs from the test fixtures.
seeds() {
  local t=$1 dir=$2 hs=$root/tests/fixtures/handshake f i=0
  rm -rf "$dir"
  mkdir -p "$dir"
  case "$t" in
  wire_parse)
    for f in "$hs"/*.l3.hex; do unhex "$f" >"$dir/$(basename "$f" .hex)"; done
    ;;
  capture_classify)
    # First byte: direction (even: incoming, odd: outgoing), then the frame.
    for f in "$hs"/initiation_*.l3.hex "$hs"/transport_*.l3.hex; do
      { printf '\x00'; unhex "$f"; } >"$dir/in-$(basename "$f" .hex)"
    done
    for f in "$hs"/response_*.l3.hex; do
      { printf '\x01'; unhex "$f"; } >"$dir/out-$(basename "$f" .hex)"
    done
    ;;
  capture_ring)
    # First byte: how many of the 4 blocks are the reader's (low 3 bits) and
    # the frame budget (high 5 bits); then the blocks, 1024 bytes each: the
    # kernel block recorded by the capture tests.
    local blk=$root/tests/fixtures/capture/tpacket_v3_block.hex
    for k in 1 3 4 255; do
      { printf "\\x$(printf %02x "$k")"; unhex "$blk" | head -c 2048; } >"$dir/recorded-$k"
    done
    ;;
  handshake_identify)
    for f in "$hs"/initiation_v4.hex "$hs"/initiation_v6.hex; do
      unhex "$f" >"$dir/$(basename "$f" .hex)"
    done
    ;;
  uci_parse | config_load)
    while IFS= read -r -d '' f; do
      i=$((i + 1))
      cp "$f" "$dir/$i-$(basename "$f")"
    done < <(find "$root/tests/fixtures/uci" "$root/tests/fixtures/config-corpus" -type f \
      ! -name '*.expect' -print0)
    printf "config agent 'agent'\n\toption role 'hub'\n\toption poll_ms '250'\n\nconfig interface 'wg0'\n\toption capture_device 'eth1'\n" \
      >"$dir/valid.conf"
    ;;
  esac
}

prepare
[ "$mode" = prepare ] && exit 0

mkdir -p target/fuzz-logs
rows=()
crashed=()
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  seed_dir=target/fuzz-seeds/$t
  log=target/fuzz-logs/$t.log
  mkdir -p "$corpus"
  seeds "$t" "$seed_dir"
  if [ "$mode" = runs ]; then
    stop=(-runs="$limit")
  else
    stop=(-max_total_time="$limit")
  fi
  echo "fuzz: $t ($mode $limit) ..."
  start=$SECONDS
  rc=0
  cargo fuzz run -s "$FUZZ_SANITIZER" "$t" "$corpus" "$seed_dir" -- "${stop[@]}" -print_final_stats=1 \
    -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1 || rc=$?
  secs=$((SECONDS - start))
  execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log" | tail -n 1)
  execs=${execs:-0}
  rate=$((execs / (secs > 0 ? secs : 1)))
  size=$(find "$corpus" -type f | wc -l)
  crashes=0
  if [ "$rc" -ne 0 ]; then
    crashes=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    crashed+=("$t: exit $rc, input ${artifact:-(none written)}; replay: RUSTC_BOOTSTRAP=1 cargo fuzz run $t ${artifact:-}; log $log")
  fi
  rows+=("$(printf '%-20s %8s %12s %10s %8s %8s' "$t" "$secs" "$execs" "$rate" "$size" "$crashes")")
done

echo
printf '%-20s %8s %12s %10s %8s %8s\n' target seconds execs "execs/s" corpus crashes
for r in "${rows[@]}"; do echo "$r"; done
if [ "${#crashed[@]}" -gt 0 ]; then
  echo
  for c in "${crashed[@]}"; do echo "CRASH $c"; done
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, 0 crashes"
