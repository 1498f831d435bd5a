#!/usr/bin/env bash
# Issue 7: the hub's private key never leaves the agent's memory. The agent runs on
# r2 with log_level debug through a NAT change, a restart of r2's WireGuard link (the
# agent reads the key again for its verifier) and a restart of the agent itself.
# r2's private key (base64 as in /run/wgroam-lab/keys/r2.key, without its padding,
# and as hex in both cases) must appear in none of: the agent's logs, `status
# --json`, state.json, status.json, the uci config and save directories the agent
# writes, /proc/PID/cmdline and /proc/PID/environ of each agent process.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

fail() { echo "FAIL: $*"; exit 1; }
t() { printf '%6d ms  %s\n' $(($(agent_ms) - T0)) "$*"; }

lab_up
T0=$(agent_ms)
d=$LAB_DIR/r2
evidence=$LAB_DIR/evidence
mkdir -p "$evidence"

key_b64=$(cat "$LAB_DIR/keys/r2.key")
key_hex=$(printf '%s' "$key_b64" | base64 -d | od -An -v -tx1 | tr -d ' \n')
[ "${#key_hex}" = 64 ] || fail "cannot decode r2's key"
patterns=$evidence/patterns
printf '%s\n' "${key_b64%=}" "$key_hex" "${key_hex^^}" >"$patterns"

# has_secret FILE: the file holds the key in one of its forms.
has_secret() { grep -a -q -F -f "$patterns" "$1"; }

# Positive controls: the search finds the key where it is.
has_secret "$LAB_DIR/keys/r2.key" || fail "control: key not found in the key file"
printf 'x%sx\n' "$key_hex" >"$evidence/control-hex"
has_secret "$evidence/control-hex" || fail "control: hex form not found"
rm -f "$evidence/control-hex"

wg0_back_with_capture() { agent_hub_status | jq -e '.interfaces[0].up and .interfaces[0].capture != null'; }
committed() { grep -q "option endpoint_port '$1'" "$d/etc/network"; }

# snapshot NAME: keeps what the running agent exposes right now.
snapshot() {
  local pid
  pid=$(agent_hub_pid)
  agent_hub_status >"$evidence/$1.status.json" || fail "$1: status failed"
  tr '\0' '\n' <"/proc/$pid/cmdline" >"$evidence/$1.cmdline"
  tr '\0' '\n' <"/proc/$pid/environ" >"$evidence/$1.environ"
  cp "$LAB_DIR/logs/agent-r2.log" "$evidence/$1.log"
}

agent_hub_setup "option log_level 'debug'" "option commit_interval '1'" "option poll_ms '100'"
agent_hub_start
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "no tunnel"
port=$(lab_nat_port_of_r1)
lab_wait_for 2 agent_hub_endpoint_is "$LAB_NAT_OUT4:$port" || fail "agent did not learn r1"
t "agent follows r1 at :$port (log_level debug)"

for _ in 1 2 3 4 5; do
  lab_nat_rebind
  lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "ping after rebind"
  new=$(lab_nat_port_of_r1)
  [ "$new" != "$port" ] && break
done
[ "$new" != "$port" ] || fail "NAT never changed the port"
lab_wait_for 3 agent_hub_endpoint_is "$LAB_NAT_OUT4:$new" || fail "agent did not follow the NAT change"
lab_wait_for 3 agent_hub_uci_is endpoint_port "$new" || fail "not staged"
cp -r "$d/save" "$evidence/save-while-staged"
t "NAT change followed: :$new, staged"

lab_r2_wg_stop
lab_r2_wg_start "$LAB_NAT_OUT4:$new"
lab_wait_for 3 wg0_back_with_capture || fail "agent did not see wg0 back with capture"
lab_exec inet ping -6 -c1 -W2 "$LAB_LAN6" >/dev/null || fail "inbound ping after the WireGuard restart"
lab_wait_for 3 committed "$new" || fail "change not committed"
t "r2's WireGuard link restarted; the change is committed"
snapshot first

pid=$(agent_hub_pid)
kill -TERM "$pid"
lab_wait_for 5 _lab_pid_gone "$pid" || fail "agent did not stop"
agent_hub_start
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "ping after the agent restart"
lab_wait_for 3 agent_hub_endpoint_is "$LAB_NAT_OUT4:$(lab_nat_port_of_r1)" || fail "agent lost r1 after its restart"
t "agent restarted (pid $(agent_hub_pid)), follows r1"
snapshot second
kill -TERM "$(agent_hub_pid)"
lab_wait_for 5 _lab_pid_gone "$(agent_hub_pid)" || fail "agent did not stop"
cp "$LAB_DIR/logs/agent-r2.log" "$evidence/second.log"

checked=0
while IFS= read -r -d '' f; do
  checked=$((checked + 1))
  if has_secret "$f"; then
    fail "r2's private key appears in ${f#"$LAB_DIR"/}"
  fi
done < <(find "$evidence" "$d/etc" "$d/save" "$d/run" "$d/state.json" -type f ! -name patterns -print0)
[ "$checked" -ge 12 ] || fail "only $checked files checked"
debug_lines=$(cat "$evidence"/*.log | grep -c 'wgroam\[debug\]' || true)
t "key absent from $checked files: logs ($(cat "$evidence"/*.log | wc -l) lines, $debug_lines at debug level), status --json, state.json, status.json, uci etc+save, cmdline, environ of both agents"
echo "PASS"
