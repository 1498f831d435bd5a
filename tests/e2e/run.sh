#!/usr/bin/env bash
# Runs wgroam's end-to-end tests: every executable tests/e2e/[0-9][0-9]-*.sh, or the
# ones named as arguments (path or file name, in the order given), one after the other.
#
# Without arguments the tests run in file-name order, except that those with a line
# "# e2e-order: late" run after all the others (still in file-name order): the tests
# that build the router targets or the fuzz targets, or boot VMs (CPU-bound, TCG).
# scripts/test.sh builds those targets in the background (scripts/prebuild.sh) while
# the lab tests, which mostly wait on timers, run first.
#
# Each test runs under `timeout` (E2E_TIMEOUT seconds, default 300) with its output in
# target/e2e-logs/NAME.log (E2E_LOG_DIR to change). Exit codes: 0 pass, 77 skip (the
# test prints its reason), anything else fail; a failed test's log is printed. A test
# that leaves the lab (tests/lab) behind fails, and the lab is torn down for the next.
# Closing line: "e2e: N passed, N failed, N skipped"; exit status 1 if any failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
timeout_s=${E2E_TIMEOUT:-300}
log_dir=${E2E_LOG_DIR:-$root/target/e2e-logs}

case "$timeout_s" in
'' | *[!0-9]*)
  echo "e2e: E2E_TIMEOUT must be a number of seconds, got '$timeout_s'" >&2
  exit 2
  ;;
esac

tests=()
if [ "$#" -gt 0 ]; then
  for arg in "$@"; do
    if [ -f "$arg" ]; then
      tests+=("$(cd "$(dirname "$arg")" && pwd)/$(basename "$arg")")
    elif [ -f "$here/$arg" ]; then
      tests+=("$here/$arg")
    else
      echo "e2e: no such test: $arg" >&2
      exit 2
    fi
  done
else
  late=()
  for t in "$here"/[0-9][0-9]-*.sh; do
    [ -e "$t" ] || continue
    if [ ! -x "$t" ]; then
      echo "e2e: note: $(basename "$t") is not executable, not run"
    elif grep -q '^# e2e-order: late' "$t"; then
      late+=("$t")
    else
      tests+=("$t")
    fi
  done
  tests+=(${late[@]+"${late[@]}"})
fi
if [ "${#tests[@]}" -eq 0 ]; then
  echo "e2e: no tests found" >&2
  echo "e2e: 0 passed, 0 failed, 0 skipped"
  exit 1
fi

mkdir -p "$log_dir"

# The lab's owner record ("PID START"), and whether that process is alive.
lab_owner_record() { cat /run/wgroam-lab.owner 2>/dev/null || true; }
lab_owner_alive() {
  local pid start stat
  read -r pid start <<<"$1" || return 1
  [ -n "${pid:-}" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  local -a f
  read -r -a f <<<"$stat"
  [ "${f[19]:-}" = "${start:-x}" ]
}
lab_leftovers() {
  local what=()
  [ -d /run/wgroam-lab ] && what+=(/run/wgroam-lab)
  local ns
  for ns in wgr-inet wgr-r2 wgr-nat wgr-r1 wgr-lan; do
    [ -e "/run/netns/$ns" ] && what+=("netns:$ns")
  done
  echo "${what[*]}"
}

passed=0 failed=0 skipped=0
failed_names=()
for t in "${tests[@]}"; do
  name=$(basename "$t" .sh)
  log=$log_dir/$name.log
  owner_before=$(lab_owner_record)
  start=$(date +%s)
  echo "e2e: $name ... ($(date +%T))"
  rc=0
  # Output to a file, not a pipe: a stray background process of the test cannot hang
  # the runner by keeping a pipe open. timeout signals the test's whole process group.
  timeout --kill-after=10 "$timeout_s" "$t" </dev/null >"$log" 2>&1 || rc=$?
  secs=$(($(date +%s) - start))

  # Lab left behind by this test (its owner is dead and is not the one from before)?
  leftover=
  owner_after=$(lab_owner_record)
  if [ -n "$(lab_leftovers)" ] && ! lab_owner_alive "$owner_after" &&
    { [ "$owner_after" != "$owner_before" ] || [ -z "$owner_after" ]; }; then
    leftover=$(lab_leftovers)
    "$root/tests/lab/lab.sh" down >>"$log" 2>&1 || true
  fi

  if [ "$rc" -eq 77 ] && [ -z "$leftover" ]; then
    skipped=$((skipped + 1))
    reason=$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)
    echo "e2e: $name SKIPPED (${secs}s): ${reason:-no reason printed}"
  elif [ "$rc" -eq 0 ] && [ -z "$leftover" ]; then
    passed=$((passed + 1))
    echo "e2e: $name passed (${secs}s)"
  else
    failed=$((failed + 1))
    failed_names+=("$name")
    case "$rc" in
    0 | 77) why="left the lab behind: $leftover" ;;
    124 | 137) why="timed out after ${timeout_s}s" ;;
    *) why="exit $rc" ;;
    esac
    if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -n "$leftover" ]; then
      why="$why; left the lab behind: $leftover"
    fi
    echo "e2e: $name FAILED (${secs}s): $why; log $log:"
    sed 's/^/    | /' "$log"
  fi
done

if [ "$failed" -gt 0 ]; then
  echo "e2e: failed: ${failed_names[*]}"
fi
echo "e2e: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
