#!/usr/bin/env bash
# Issue 7: a short fuzzing pass, 10 s per libFuzzer target (scripts/fuzz.sh 10):
# wire_parse, handshake_identify, uci_parse, config_load, capture_classify. Passes
# when every target ran (>= 1000 inputs) and none crashed. The first run on a machine
# also installs cargo-fuzz and builds the targets (minutes; see scripts/fuzz.sh).
# e2e-order: late (tests/e2e/run.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)

fail() { echo "FAIL: $*"; exit 1; }

out=$root/target/fuzz-short.out
mkdir -p "$root/target"
rc=0
FUZZ_SANITIZER=none bash "$root/scripts/fuzz.sh" 10 >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" = 0 ] || fail "scripts/fuzz.sh exited $rc"
for t in wire_parse handshake_identify uci_parse config_load capture_classify; do
  row=$(awk -v t="$t" '$1 == t' "$out")
  [ -n "$row" ] || fail "no result for $t"
  read -r _ _ execs _ _ crashes <<<"$row"
  [ "$crashes" = 0 ] || fail "$t crashed"
  [ "$execs" -ge 1000 ] || fail "$t executed only $execs inputs"
done
echo "PASS"
