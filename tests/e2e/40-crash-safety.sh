#!/usr/bin/env bash
# Issue 7: crash safety. The hub agent is killed with SIGKILL at every write step
# (state/status file before and after its rename, uci batch before and after, uci
# commit before and after), at the first and the second time it gets there, while
# r1 keeps moving behind the NAT. After every crash: state.json and status.json parse,
# uci reads the committed file and the staged changes, no change is staged twice;
# then a restart converges: status comes back, the endpoint is r1's real NAT port in
# the agent, the kernel and uci, the change is committed once, and a clean stop works.
#
# Two crash windows have their own checks:
# - changes staged by the killed agent but not committed: the restarted agent finds
#   them in `uci changes` and commits them by its policy (commit_interval 1 here),
#   so nothing stays pending in RAM until some later move;
# - killed between the state write and the uci stage: the state file is written
#   first, so the restarted agent never stages an older endpoint back (no change is
#   ever staged twice).
# A temporary file a kill leaves behind (.NAME.tmp) is overwritten by the next write:
# none is left once the restarted agent has written again.
# The kill comes from the agent itself: a build with the cargo feature crash-inject
# reads WGROAM_CRASH_AT=<step>:<n> and SIGKILLs itself there (src/os/crashpoint.rs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
export PATH="$HOME/.cargo/bin:$PATH"

STEPS=(persist-before-rename persist-after-rename uci-before-batch uci-after-batch
  uci-before-commit uci-after-commit)
leftover_tmp=0

fail() {
  echo "FAIL: $*"
  echo "--- agent log"
  agent_hub_log 2>/dev/null | tail -n 30 || true
  exit 1
}
t() { printf '%6d ms  %s\n' $(($(agent_ms) - T0)) "$*"; }

# The crash-inject build, copied aside so nothing else picks it up by accident.
build_crash_binary() {
  local out=$root/target/crash-inject/wgroam
  (cd "$root" && cargo build --quiet --features crash-inject) || return 1
  mkdir -p "$(dirname "$out")" || return 1
  cp "$root/target/debug/wgroam" "$out.tmp" && mv "$out.tmp" "$out" || return 1
  echo "$out"
}

# crash_start STEP N: starts the agent set to kill itself at the N-th STEP.
crash_start() {
  local bin uci d=$LAB_DIR/r2
  bin=$(agent_bin) || return 1
  uci=$(agent_uci_bin) || return 1
  _lab_spawn agent-r2 wgr-r2 env WGROAM_UCI_BIN="$uci" WGROAM_CRASH_AT="$1:$2" "$bin" run \
    --config "$d/wgroam.conf" --stderr --uci-confdir "$d/etc" --uci-savedir "$d/save"
}

uci_r2() { "$(agent_uci_bin)" -c "$LAB_DIR/r2/etc" -t "$LAB_DIR/r2/save" "$@"; }

# check_files WHEN: every file the agent writes is whole and readable.
check_files() {
  local when=$1 d=$LAB_DIR/r2 err dups n
  if [ -e "$d/state.json" ]; then
    jq -e '.version == 2 and (.peers | type == "array")' "$d/state.json" >/dev/null ||
      fail "$when: state.json does not parse: $(head -c 200 "$d/state.json")"
  fi
  if [ -e "$d/run/status.json" ]; then
    jq -e '.role == "hub" and (.interfaces | type == "array")' "$d/run/status.json" >/dev/null ||
      fail "$when: status.json does not parse"
  fi
  err=$(uci_r2 export network 2>&1 >/dev/null) || fail "$when: uci cannot read network: $err"
  [ -z "$err" ] || fail "$when: uci export complains: $err"
  err=$("$(agent_uci_bin)" -c "$d/etc" -t "$d/empty-save" export network 2>&1 >/dev/null) ||
    fail "$when: the committed network file does not parse: $err"
  dups=$(uci_r2 changes network | sort | uniq -d)
  [ -z "$dups" ] || fail "$when: a change is staged twice: $dups"
  n=$(grep -c "option endpoint_port" "$d/etc/network" || true)
  [ "$n" -le 1 ] || fail "$when: $n endpoint_port lines in the committed file"
  n=$(find "$d" -name '.*.tmp*' | wc -l)
  leftover_tmp=$n
}

pending_is_empty() { [ -z "$(uci_r2 changes network)" ]; }

# committed PORT: nothing pending and PORT in the committed file. Both, polled
# together: `uci commit` empties the delta file before it renames the new config
# into place (libuci file.c, uci_file_commit), so for a moment neither holds it.
committed() {
  pending_is_empty && grep -q "option endpoint_port '$1'" "$LAB_DIR/r2/etc/network"
}

# move_r1 OLD_PORT: NAT rebind + traffic until r1 appears on another port; prints it.
move_r1() {
  local p
  for _ in 1 2 3 4 5; do
    lab_nat_rebind || return 1
    lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || return 1
    p=$(lab_nat_port_of_r1) || return 1
    if [ "$p" != "$1" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# traffic_and_endpoint_is EP: one ping from the LAN through the tunnel, then
# whether the agent shows EP.
traffic_and_endpoint_is() {
  lab_exec lan ping -6 -c1 -W1 "$LAB_INET6" >/dev/null 2>&1 || true
  agent_hub_endpoint_is "$1"
}

crash_case() {
  local step=$1 n=$2 pid rc=0 port
  crash_start "$step" "$n" || fail "cannot start the agent"
  pid=$(agent_hub_pid)
  # Keep r1 moving: each rebind is an endpoint move (a state write and a uci
  # stage), then a commit one second later.
  for _ in 1 2 3 4 5 6 7 8; do
    lab_wait_for 1.5 _lab_pid_gone "$pid" && break
    lab_nat_rebind
    lab_exec lan ping -6 -c1 -W1 "$LAB_INET6" >/dev/null 2>&1 || true
  done
  _lab_pid_gone "$pid" || fail "$step:$n: the agent never reached the step (8 NAT moves)"
  wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" = 137 ] || fail "$step:$n: agent exit status $rc, expected 137 (SIGKILL)"
  grep -q "crash-inject: SIGKILL at $step #$n" "$LAB_DIR/logs/agent-r2.log" ||
    fail "$step:$n: killed, but not at the step"
  check_files "after kill -9 at $step #$n"
  local crashed_leftovers=$leftover_tmp pending_at_kill
  pending_at_kill=$(uci_r2 changes network | grep -c endpoint || true)

  # Restart (same binary, no crash) and converge.
  agent_hub_start || fail "$step:$n: no status within 5 s of the restart"
  pid=$(agent_hub_pid)
  lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "$step:$n: tunnel down after the restart"
  port=$(lab_nat_port_of_r1)
  # A restarted agent believes the kernel's endpoint once the kernel
  # authenticates traffic from it after the agent's first look (issue 12): the
  # LAN keeps talking, as it would, while we wait.
  lab_wait_for 3 traffic_and_endpoint_is "$LAB_NAT_OUT4:$port" ||
    fail "$step:$n: agent shows $(agent_hub_endpoint) after the restart, r1 is at :$port"
  [ "$(lab_r2_endpoint)" = "$LAB_NAT_OUT4:$port" ] || fail "$step:$n: kernel endpoint $(lab_r2_endpoint)"
  lab_wait_for 3 agent_hub_uci_is endpoint_port "$port" ||
    fail "$step:$n: uci endpoint_port '$(agent_hub_uci endpoint_port)', expected $port"
  [ "$(agent_hub_uci endpoint_host)" = "$LAB_NAT_OUT4" ] || fail "$step:$n: uci endpoint_host"
  check_files "after the restart ($step #$n)"
  # Changes the killed agent staged but did not commit: the new one commits them
  # by its policy (commit_interval 1).
  if ! lab_wait_for 3 committed "$port"; then
    pending_is_empty ||
      fail "$step:$n: changes staged before the kill are still pending 3 s after the restart: $(uci_r2 changes network | tr '\n' ' ')"
    fail "$step:$n: :$port not in the committed file after the restart"
  fi

  # One more move after the restart: followed, staged once, committed once.
  local old=$port
  port=$(move_r1 "$old") || fail "$step:$n: NAT never changed the port"
  lab_wait_for 3 agent_hub_endpoint_is "$LAB_NAT_OUT4:$port" ||
    fail "$step:$n: agent shows $(agent_hub_endpoint), r1 moved to :$port"
  lab_wait_for 3 agent_hub_uci_is endpoint_port "$port" || fail "$step:$n: uci not staged with :$port"
  if ! lab_wait_for 4 committed "$port"; then
    pending_is_empty || fail "$step:$n: changes still pending 4 s after a move: $(uci_r2 changes network | tr '\n' ' ')"
    fail "$step:$n: :$port not committed"
  fi
  check_files "after a move after the restart ($step #$n)"
  [ "$leftover_tmp" = 0 ] ||
    fail "$step:$n: temporary files left after the restarted agent wrote again: $(find "$LAB_DIR/r2" -name '.*.tmp*' -printf '%f ')"

  kill -TERM "$pid"
  lab_wait_for 5 _lab_pid_gone "$pid" || fail "$step:$n: agent did not stop on SIGTERM"
  rc=0
  wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" = 0 ] || fail "$step:$n: clean stop exited $rc"
  check_files "after the clean stop ($step #$n)"
  grep -q "wgroam\[error\]" "$LAB_DIR/logs/agent-r2.log" && fail "$step:$n: errors logged after the restart"
  t "kill -9 at $step #$n: files valid ($crashed_leftovers temp files, $pending_at_kill endpoint changes pending at the kill), restart converged on :$old and committed; moved to :$port, committed once"
}

T0=$(agent_ms)
WGROAM_BIN=$(build_crash_binary) || fail "cannot build the crash-inject binary"
export WGROAM_BIN
t "crash-inject build: $WGROAM_BIN"
trap lab_down EXIT
lab_up
agent_hub_setup "option commit_interval '1'" "option poll_ms '100'"
mkdir -p "$LAB_DIR/r2/empty-save"
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "no tunnel at start"
t "lab up, r1 handshaked"

for step in "${STEPS[@]}"; do
  for n in 1 2; do
    crash_case "$step" "$n"
  done
done
echo "PASS"
