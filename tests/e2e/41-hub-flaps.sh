#!/usr/bin/env bash
# Issue 7: flaps. 100 cycles of (a) a NAT rebind while r1 sends: the kernel roams r1
# and the agent follows; (b) a restart of r2's WireGuard link that comes back with
# the stale endpoint from before the rebind (what netifd applies from an old uci
# value): the agent restores the right one and inbound traffic to the LAN works.
# Every cycle: status endpoint == kernel endpoint == the NAT's port for r1
# (conntrack), exactly one route to r1's LAN. Over the run: the agent's RSS stays
# flat (within 5 % between cycle 10 and cycle 100) and it logs no error.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

CYCLES=${FLAP_CYCLES:-100}
fail() {
  echo "FAIL: $*"
  echo "--- agent log (last 20 lines)"
  agent_hub_log 2>/dev/null | tail -n 20 || true
  exit 1
}
t() { printf '%6d ms  %s\n' $(($(agent_ms) - T0)) "$*"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$(agent_hub_pid)/status"; }
routes_to_lan() { ip -n wgr-r2 -6 route show 2001:db8:100:1::/64 | wc -l; }
# ping_retry NS ADDR SECONDS: one echo at a time until one is answered.
ping_retry() {
  local deadline=$(($(agent_ms) + $3 * 1000))
  until lab_exec "$1" ping -6 -c1 -W0.3 "$2" >/dev/null 2>&1; do
    [ "$(agent_ms)" -lt "$deadline" ] || return 1
  done
}
# r1's endpoint in r2's kernel. wireguard-go's UAPI socket is not per netns, so
# `wg` needs no `ip netns exec` (see tests/lab/lab.sh).
kernel_endpoint() { wg show wg0 endpoints | awk -v k="$R1_KEY" '$1 == k { print $2 }'; }
# r1's endpoint in the agent's status file (polled; `status --json` confirms below).
status_endpoint() {
  jq -r --arg k "$R1_KEY" '.interfaces[] | select(.name == "wg0") | .peers[] |
    select(.public_key == $k) | .endpoint // "none"' "$LAB_DIR/r2/run/status.json"
}
# The agent and the kernel both have r1 at EP.
followed() { [ "$(kernel_endpoint)" = "$1" ] && [ "$(status_endpoint)" = "$1" ]; }
# followed, as `wgroam status --json` reports it.
confirmed() { [ "$(kernel_endpoint)" = "$1" ] && [ "$(agent_hub_endpoint)" = "$1" ]; }

lab_up
T0=$(agent_ms)
R1_KEY=$(lab_r1_pubkey)
agent_hub_setup "option poll_ms '100'"
agent_hub_start
ping_retry lan "$LAB_INET6" 3 || fail "no tunnel at start"
port=$(lab_nat_port_of_r1)
lab_wait_for 2 followed "$LAB_NAT_OUT4:$port" || fail "agent did not learn r1 at :$port"
t "agent (pid $(agent_hub_pid)) follows r1 at :$port; $CYCLES cycles of NAT rebind + WireGuard restart"

moved=0 rss10=
for i in $(seq 1 "$CYCLES"); do
  # (a) NAT rebind while r1 sends.
  old=$port
  lab_nat_rebind
  ping_retry lan "$LAB_INET6" 3 || fail "cycle $i: r1's ping after the NAT rebind failed"
  port=$(lab_nat_port_of_r1) || fail "cycle $i: no NAT mapping"
  [ "$port" = "$old" ] || moved=$((moved + 1))
  lab_wait_for 2 followed "$LAB_NAT_OUT4:$port" ||
    fail "cycle $i: after the rebind the agent shows $(status_endpoint), kernel $(kernel_endpoint), NAT :$port"

  # (b) r2's WireGuard link restarts with the stale endpoint.
  lab_r2_wg_stop
  lab_r2_wg_start "$LAB_NAT_OUT4:$old" || fail "cycle $i: cannot restart wg0"
  lab_wait_for 2 followed "$LAB_NAT_OUT4:$port" ||
    fail "cycle $i: after the restart the agent shows $(status_endpoint), kernel $(kernel_endpoint), NAT :$port"
  ping_retry inet "$LAB_LAN6" 3 || fail "cycle $i: inbound ping to the LAN failed after the restart"
  confirmed "$LAB_NAT_OUT4:$port" ||
    fail "cycle $i: status --json shows $(agent_hub_endpoint), kernel $(kernel_endpoint), NAT :$port"
  [ "$(routes_to_lan)" = 1 ] || fail "cycle $i: $(routes_to_lan) routes to 2001:db8:100:1::/64: $(ip -n wgr-r2 -6 route show 2001:db8:100:1::/64)"

  if [ "$i" = 10 ]; then
    rss10=$(rss_kb)
    t "cycle 10: agent RSS ${rss10} kB"
  elif [ $((i % 25)) = 0 ]; then
    t "cycle $i: r1 at :$port, RSS $(rss_kb) kB"
  fi
done

rss_end=$(rss_kb)
t "cycle $CYCLES: agent RSS ${rss_end} kB (cycle 10: ${rss10:-?} kB)"
if [ -n "$rss10" ]; then
  diff=$((rss_end > rss10 ? rss_end - rss10 : rss10 - rss_end))
  [ $((diff * 100)) -le $((rss10 * 5)) ] || fail "RSS changed by ${diff} kB (> 5 % of ${rss10} kB)"
fi
log=$LAB_DIR/logs/agent-r2.log
# A port change is followed through the kernel's roam, or, when r1's packet
# started a handshake or carried a session the restarted link lost, through the
# initiation or the session index: any of these is a move.
follows=$(grep -cE ' \((kernel|initiation|index)\)$' "$log" || true)
restores=$(grep -cE ' \(restored(: [^)]*)?\)$' "$log" || true)
t "log: $follows moves (kernel/initiation/index), $restores restores, $(wc -l <"$log") lines"
[ "$follows" -ge "$moved" ] || fail "only $follows moves for $moved port changes"
[ "$restores" -ge "$moved" ] || fail "only $restores restores for $moved restarts with a stale port"
if grep -q 'wgroam\[error\]' "$log"; then
  grep 'wgroam\[error\]' "$log" | head -n 5
  fail "the agent logged errors"
fi
kill -0 "$(agent_hub_pid)" || fail "agent died"
echo "PASS"
