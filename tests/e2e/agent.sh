#!/usr/bin/env bash
# Helpers for e2e tests that run the real wgroam binary inside the lab.
# Source after tests/lab/lab.sh. The binary is $WGROAM_BIN (scripts/test.sh builds
# the static musl one), else target/x86_64-unknown-linux-musl/release/wgroam, else
# target/debug/wgroam.

_agent_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

agent_bin() {
  local b
  for b in "${WGROAM_BIN:-}" "$_agent_root/target/x86_64-unknown-linux-musl/release/wgroam" \
    "$_agent_root/target/debug/wgroam"; do
    if [ -n "$b" ] && [ -x "$b" ]; then
      echo "$b"
      return 0
    fi
  done
  echo "agent: no wgroam binary; build it (cargo build) or set WGROAM_BIN" >&2
  return 1
}

agent_uci_bin() {
  local b=${WGROAM_UCI_BIN:-$_agent_root/target/tools/bin/uci}
  [ -x "$b" ] || { echo "agent: no uci tool at $b; run tests/tools/build-uci.sh" >&2; return 1; }
  echo "$b"
}

# agent_hub_setup [EXTRA_AGENT_OPTIONS...]: writes r2's uci tree (network with wg0 and
# a wireguard_wg0 peer section 'r1' for r1's key, no endpoint) and the wgroam config
# under $LAB_DIR/r2/. Extra lines go into the agent section.
agent_hub_setup() {
  local d=$LAB_DIR/r2 line
  mkdir -p "$d/etc" "$d/save" "$d/run" || return 1
  cat >"$d/etc/network" <<EOF2 || return 1
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config interface 'wan'
	option device 'wan'
	option proto 'static'
	option ipaddr '$LAB_R2_WAN4'
	option netmask '255.255.255.0'

config interface 'wg0'
	option proto 'wireguard'
	option private_key '(in /run/wgroam-lab/keys/r2.key)'
	option listen_port '$LAB_R2_PORT'
	list addresses '$LAB_R2_TUN6/64'

config wireguard_wg0 'r1'
	option description 'travel router'
	option public_key '$(lab_r1_pubkey)'
	list allowed_ips '$LAB_R1_TUN6/128'
	list allowed_ips '2001:db8:100:1::/64'
	option route_allowed_ips '1'
EOF2
  {
    echo "config agent 'agent'"
    echo "	option role 'hub'"
    echo "	option state_dir '$d/run'"
    echo "	option state_file '$d/state.json'"
    for line in "$@"; do echo "	$line"; done
    echo
    echo "config interface 'wg0'"
    echo "	option capture_device 'wan'"
  } >"$d/wgroam.conf" || return 1
  cp "$d/etc/network" "$d/network.orig"
}

# agent_hub_start: starts `wgroam run` in wgr-r2 (PID recorded; lab_down stops it).
agent_hub_start() {
  local bin uci d=$LAB_DIR/r2
  bin=$(agent_bin) || return 1
  uci=$(agent_uci_bin) || return 1
  WGROAM_UCI_BIN=$uci _lab_spawn agent-r2 wgr-r2 env WGROAM_UCI_BIN="$uci" "$bin" run \
    --config "$d/wgroam.conf" --stderr --uci-confdir "$d/etc" --uci-savedir "$d/save" || return 1
  if ! lab_wait_for 5 test -s "$d/run/status.json"; then
    echo "agent: hub did not write status within 5 s; log:" >&2
    cat "$LAB_DIR/logs/agent-r2.log" >&2
    return 1
  fi
}

agent_hub_pid() { cat "$LAB_DIR/pids/agent-r2.pid"; }
agent_hub_log() { cat "$LAB_DIR/logs/agent-r2.log"; }

# agent_hub_status: `wgroam status --json` of the hub.
agent_hub_status() {
  local bin
  bin=$(agent_bin) || return 1
  "$bin" status --json --state-dir "$LAB_DIR/r2/run"
}

# agent_hub_endpoint: r1's endpoint as the agent reports it.
agent_hub_endpoint() {
  agent_hub_status | jq -r --arg k "$(lab_r1_pubkey)" \
    '.interfaces[] | select(.name == "wg0") | .peers[] | select(.public_key == $k) | .endpoint // "none"'
}

# agent_hub_uci OPTION: r1's peer option as uci sees it (committed + staged).
agent_hub_uci() {
  local uci
  uci=$(agent_uci_bin) || return 1
  "$uci" -c "$LAB_DIR/r2/etc" -t "$LAB_DIR/r2/save" -q get "network.r1.$1"
}

# ms since the epoch
agent_ms() { echo $(($(date +%s%N) / 1000000)); }

# agent_hub_endpoint_is EP: succeeds when the agent reports r1 at EP (for lab_wait_for).
agent_hub_endpoint_is() { [ "$(agent_hub_endpoint)" = "$1" ]; }

# agent_hub_uci_is OPTION VALUE: succeeds when uci holds VALUE (for lab_wait_for).
agent_hub_uci_is() { [ "$(agent_hub_uci "$1")" = "$2" ]; }

# lab_r2_wg_stop: takes r2's WireGuard link down (wireguard-go exits, wg0 is gone).
lab_r2_wg_stop() {
  lab_stop wireguard-go-wg0
  rm -f "$LAB_WG_SOCK_DIR/wg0.sock"
}

# lab_r2_wg_start [ENDPOINT]: re-creates r2's wg0 the way netifd sets it up from uci
# (`wg setconf`-style: key, port, peer, allowed_ips, endpoint if given), with its
# address and the route to r1's LAN.
lab_r2_wg_start() {
  local ep=${1:-} out
  _lab_wg_start wgr-r2 wg0 || return 1
  if ! out=$(ip netns exec wgr-r2 wg set wg0 listen-port "$LAB_R2_PORT" \
    private-key "$LAB_DIR/keys/r2.key" \
    peer "$(lab_r1_pubkey)" allowed-ips "$LAB_R1_TUN6/128,2001:db8:100:1::/64" \
    ${ep:+endpoint "$ep"} 2>&1); then
    echo "lab_r2_wg_start: $out" >&2
    return 1
  fi
  _lab_nft_wg_quiet wgr-r2 wg0 2>/dev/null || true
  _lab_ip wgr-r2 <<'EOF2' || return 1
addr add 2001:db8:100::1/64 dev wg0 nodad
link set wg0 up
route add 2001:db8:100:1::/64 dev wg0
EOF2
}

# ping_ok NS ADDR: one ICMPv6 echo with a 200 ms deadline.
ping_ok() { ip netns exec "wgr-$1" ping -6 -c1 -W0.2 "$2" >/dev/null 2>&1; }
