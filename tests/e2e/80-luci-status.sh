#!/usr/bin/env bash
# Issue 15: the `wgroam` ubus object (rpcd plugin) and luci-app-wgroam's
# status page, with real agents in the lab.
#
#  1. The app's static checks (tests/luci/check-app.js): JS views parse (node),
#     menu and ACL JSON parse, and every ubus method / uci config a view uses
#     is granted by the ACL, and nothing more.
#     The settings form's field checks give the same verdict and message as
#     the real `wgroam check` (tests/luci/validate-vs-check.js).
#  2. Hub (r2) and roam (r1, radvd delegation) agents run; the LAN client has
#     its address from the delegated prefix. With both agents frozen
#     (SIGSTOP: the status files stay put, the pids stay alive), the rpcd
#     plugin's `call status` equals `wgroam status --json`, for each.
#  3. The roam's status page in headless chromium (tests/luci/status-page.js:
#     LuCI runtime stand-in, rpcd/ACL stand-in running the real plugin): it
#     shows the hub endpoint the agent believes, the delegation state and
#     prefix. Screenshot target/screenshots/roam.png (phone width).
#  4. r1 gets a preshared key the hub does not have: r1's initiations reach
#     the hub (verified by its capture) but no handshake completes, so the
#     hub names the problem. The hub's page shows the peer's endpoint and that
#     problem text, the count of a forged initiation it ignored, and refreshes
#     by polling. Screenshot target/screenshots/hub.png.
#  5. The roam agent stopped: the plugin answers {"error": <what wgroam status
#     says>, "exit": 3}, and the page says that wgroam is not running.
#
# Needs node, Debian's chromium and tests/luci/node_modules (scripts/install-deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

for tool in node busybox jq; do
  command -v "$tool" >/dev/null || { echo "80-luci-status: $tool missing; run scripts/install-deps.sh"; exit 1; }
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "80-luci-status: chromium missing; run scripts/install-deps.sh"; exit 1; }
[ -d "$root/tests/luci/node_modules/playwright-core" ] ||
  { echo "80-luci-status: tests/luci/node_modules missing; run scripts/install-deps.sh (npm ci)"; exit 1; }

shots=$root/target/screenshots
mkdir -p "$shots"
plugin=$root/openwrt/files/wgroam.rpcd
bin=$(agent_bin)

step() { printf '\n=== 80-luci-status: %s (%ss)\n' "$*" "$SECONDS"; }

step "static checks of luci-app-wgroam"
node "$root/tests/luci/check-app.js" || fail "luci-app-wgroam static checks"
step "the settings form's checks say what wgroam check says"
out=$(node "$root/tests/luci/validate-vs-check.js" "$bin") || { echo "$out" | grep -v '^ok'; fail "settings form checks differ from wgroam check"; }
echo "$out" | tail -n 1

# plugin_status CONFIG: `ubus call wgroam status` as rpcd runs the plugin.
plugin_status() { echo '{}' | WGROAM_BIN=$bin WGROAM_CONFIG=$1 busybox sh "$plugin" call status; }
# same_json A B: equal as JSON values (key order aside).
same_json() { [ "$(jq -S . <<<"$1")" = "$(jq -S . <<<"$2")" ]; }
freeze() { kill -STOP "$(lab_pid "$1")"; }
thaw() { kill -CONT "$(lab_pid "$1")"; }

step "lab with a hub and a roam agent"
roam_lab_start_both
lab_wait_for 10 roam_delegation_is delegated || fail "roam: prefix not delegated"
hub_knows_r1() { [ "$(agent_hub_endpoint)" != none ] && [ -n "$(agent_hub_endpoint)" ]; }
lab_wait_for 10 hub_knows_r1 || fail "hub: no endpoint for r1"
hub_conf=$LAB_DIR/r2/wgroam.conf
roam_conf=$LAB_DIR/r1/wgroam.conf

step "rpcd plugin == wgroam status --json (agents frozen)"
freeze agent-r2
freeze agent-r1
hub_json=$(agent_hub_status)
roam_json=$(agent_roam_status)
same_json "$(plugin_status "$hub_conf")" "$hub_json" || fail "plugin status differs for the hub: $(plugin_status "$hub_conf")"
same_json "$(plugin_status "$roam_conf")" "$roam_json" || fail "plugin status differs for the roam: $(plugin_status "$roam_conf")"
echo "ok: the plugin returns the hub's and the roam's status --json unchanged"
jq -c '{role, endpoint: .interfaces[0].endpoint, delegation: .interfaces[0].delegation}' <<<"$roam_json"

step "roam status page in chromium"
roam_ep=$(jq -r '.interfaces[0].endpoint' <<<"$roam_json")
roam_prefix=$(jq -r '.interfaces[0].delegation.prefix' <<<"$roam_json")
[ "$roam_ep" = "$LAB_R2_WAN4:$LAB_R2_PORT" ] || fail "roam endpoint '$roam_ep'"
node "$root/tests/luci/status-page.js" --config "$roam_conf" --wgroam "$bin" --width 390 \
  --shot "$shots/roam.png" \
  --expect "Hub endpoint" --expect "$roam_ep" --expect "$roam_prefix" --expect "delegated" \
  --expect-attr '.wgroam-delegation|data-state|delegated' \
  --expect-attr '[data-key=endpoint] .wgroam-endpoint|text|'"$roam_ep" ||
  fail "roam status page"

# The roam status is getting delegation.{problem,interface,downstream,mtu}
# and the state "pending" (issue 13's branch): the page renders them when
# present. The real roam status with those fields added, served for the
# still-running (frozen) roam agent by the real plugin and `wgroam status`.
step "roam page with the delegation fields of the next status version"
mkdir -p "$LAB_DIR/r1-next/run"
jq '.interfaces[0].delegation += {state: "pending", problem: "netifd has not announced the prefix yet (odhcpd)", interface: "wg1_6", downstream: ["lan", "guest"], mtu: 1280}' \
  <<<"$roam_json" >"$LAB_DIR/r1-next/run/status.json"
sed "s#option state_dir .*#option state_dir '$LAB_DIR/r1-next/run'#" "$roam_conf" >"$LAB_DIR/r1-next/wgroam.conf"
node "$root/tests/luci/status-page.js" --config "$LAB_DIR/r1-next/wgroam.conf" --wgroam "$bin" \
  --expect "netifd has not announced the prefix yet (odhcpd)" --expect "interface wg1_6" \
  --expect "to lan, guest" --expect "MTU 1280" \
  --expect-attr '.wgroam-delegation|data-state|pending' >"$LAB_DIR/next.log" ||
  { cat "$LAB_DIR/next.log"; fail "roam page with the next delegation fields"; }
grep -E '^(ok|FAIL)' "$LAB_DIR/next.log"
thaw agent-r1
thaw agent-r2

step "hub: r1 with a preshared key the hub does not have"
lab_stop agent-r1
r2pub=$(lab_r2_pubkey)
(umask 077 && ip netns exec wgr-r1 wg genpsk >"$LAB_DIR/psk")
# A fresh peer (no session), as netifd would configure it with a wrong key.
ip netns exec wgr-r1 wg set wg1 peer "$r2pub" remove
ip netns exec wgr-r1 wg set wg1 peer "$r2pub" preshared-key "$LAB_DIR/psk" \
  endpoint "$LAB_R2_WAN4:$LAB_R2_PORT" allowed-ips ::/0
ip netns exec wgr-r1 ping -6 -c1 -W1 "$LAB_R2_TUN6" >/dev/null 2>&1 || true
# Somebody on the internet sends the hub a forged initiation (zero MAC): the
# capture ignores it and counts it.
ip netns exec wgr-inet python3 -c 'import socket, sys
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"\x01\0\0\0" + bytes(144), (sys.argv[1], int(sys.argv[2])))' \
  "$LAB_R2_WAN4" "$LAB_R2_PORT"
hub_ignored() { [ "$(agent_hub_status | jq '.interfaces[0].ignored | length')" -gt 0 ]; }
lab_wait_for 5 hub_ignored || fail "the hub counted no ignored packet"
hub_problem() { [ "$(agent_hub_status | jq -r '.interfaces[0].peers[0].problem // empty')" != "" ]; }
lab_wait_for 40 hub_problem || fail "the hub named no problem: $(agent_hub_status)"
freeze agent-r2
hub_json=$(agent_hub_status)
same_json "$(plugin_status "$hub_conf")" "$hub_json" || fail "plugin status differs for the hub with a problem"
hub_ep=$(jq -r '.interfaces[0].peers[0].endpoint' <<<"$hub_json")
hub_problem_text=$(jq -r '.interfaces[0].peers[0].problem' <<<"$hub_json")
hub_ignored_text=$(jq -r '.interfaces[0].ignored | to_entries | sort_by(.key) | map("\(.key) \(.value)") | join(", ")' <<<"$hub_json")
jq -c '.interfaces[0] | {ignored, peer: .peers[0] | {endpoint, initiations, handshakes, problem}}' <<<"$hub_json"
case "$hub_ep" in 198.51.100.3:*) ;; *) fail "hub endpoint '$hub_ep' is not r1's NAT address" ;; esac
[ -n "$hub_ignored_text" ] || fail "no ignored counts to look for"
thaw agent-r2
node "$root/tests/luci/status-page.js" --config "$hub_conf" --wgroam "$bin" --width 1024 --poll \
  --shot "$shots/hub.png" \
  --expect "$hub_ep" --expect "$hub_problem_text" --expect "Ignored packets" \
  --expect-attr ".wgroam-ignored|text|$hub_ignored_text" \
  --expect-attr '[data-key=endpoint] .wgroam-endpoint|text|'"$hub_ep" ||
  fail "hub status page"

step "not running: the plugin's error object, the page says so"
rc=0
err=$("$bin" status --json --config "$roam_conf" 2>&1 >/dev/null) || rc=$?
[ "$rc" = 3 ] || fail "wgroam status of a stopped agent: exit $rc"
got=$(plugin_status "$roam_conf")
same_json "$got" "$(jq -n --arg e "$err" '{error: $e, exit: 3}')" || fail "plugin error object: $got"
echo "ok: $got"
node "$root/tests/luci/status-page.js" --config "$roam_conf" --wgroam "$bin" \
  --expect "wgroam is not running." --expect "is not running" || fail "not-running page"

echo "screenshots: $shots/roam.png $shots/hub.png"
echo "PASS"
