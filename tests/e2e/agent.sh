#!/usr/bin/env bash
# Helpers for e2e tests that run the real wgroam binary inside the lab.
# Source after tests/lab/lab.sh. The binary is $WGROAM_BIN (scripts/test.sh builds
# the static musl one), else the newer of the musl release and the debug build.

_agent_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

agent_bin() {
  if [ -n "${WGROAM_BIN:-}" ]; then
    [ -x "$WGROAM_BIN" ] || { echo "agent: WGROAM_BIN=$WGROAM_BIN is not executable" >&2; return 1; }
    echo "$WGROAM_BIN"
    return 0
  fi
  # The newest build wins, so a stale release binary is never tested by mistake.
  local b
  b=$(ls -t "$_agent_root/target/x86_64-unknown-linux-musl/release/wgroam" \
    "$_agent_root/target/debug/wgroam" 2>/dev/null | head -n 1 || true) # ls fails for the missing one
  if [ -z "$b" ]; then
    echo "agent: no wgroam binary; build it (cargo build) or set WGROAM_BIN" >&2
    return 1
  fi
  echo "$b"
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

# For test scripts: `fail MSG` prints FAIL with the agents' logs and exits 1;
# `t MSG` prints MSG on the test's timeline (ms since T0, which the test sets).
fail() {
  local f
  echo "FAIL: $*"
  for f in agent-r2 agent-r1; do
    if [ -f "$LAB_DIR/logs/$f.log" ]; then
      echo "--- $f log (last 30 lines)"
      tail -n 30 "$LAB_DIR/logs/$f.log"
    fi
  done
  exit 1
}
t() { printf '%6d ms  %s\n' $(($(agent_ms) - ${T0:-0})) "$*"; }

# agent_hub_endpoint_is EP: succeeds when the agent reports r1 at EP (for lab_wait_for).
agent_hub_endpoint_is() { [ "$(agent_hub_endpoint)" = "$1" ]; }

# agent_hub_uci_is OPTION VALUE: succeeds when uci holds VALUE (for lab_wait_for).
agent_hub_uci_is() { [ "$(agent_hub_uci "$1")" = "$2" ]; }

# iface_up_is true|false: the hub agent reports wg0 up (or not) (for lab_wait_for).
iface_up_is() { [ "$(agent_hub_status | jq -r '.interfaces[0].up')" = "$1" ]; }

# kernel_is EP: r2's kernel has r1 at EP (for lab_wait_for).
kernel_is() { [ "$(lab_r2_endpoint)" = "$1" ]; }

# sum_md5 FILE...: one digest of the files' contents (missing files count as empty).
sum_md5() { { cat "$@" 2>/dev/null || true; } | md5sum | cut -d' ' -f1; }

# r1_new_nat_port PORT: rebinds r1's NAT mapping and has r1 send data through the
# tunnel (the kernel roams on it) until the NAT gives a port other than PORT (it may
# draw the same one again, 1 in 1000; five tries); prints the new port, or says why
# not on stderr and fails.
r1_new_nat_port() {
  local p2 attempt
  for attempt in 1 2 3 4 5; do
    lab_nat_rebind
    if ! lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null; then
      echo "ping after NAT rebind failed" >&2
      return 1
    fi
    p2=$(lab_nat_port_of_r1) || return 1
    if [ "$p2" != "$1" ]; then
      echo "$p2"
      return 0
    fi
  done
  echo "NAT never changed the port" >&2
  return 1
}

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

# capture_initiations_start: records r2's inbound handshake initiations (pcap).
capture_initiations_start() {
  lab_spawn tcpdump-init r2 tcpdump --immediate-mode -n -U -i wan -w "$LAB_DIR/init.pcap" \
    'udp dst port 51820 and udp[8] = 1'
  lab_wait_for 5 test -s "$LAB_DIR/init.pcap"
}

# capture_initiations_stop HEXFILE: stops, writes the first captured initiation's
# 148 bytes as hex to HEXFILE (pcap header 24, record 16, Ethernet 14, IPv4 20, UDP 8).
capture_initiations_stop() {
  lab_wait_for 3 sh -c "[ \$(stat -c %s '$LAB_DIR/init.pcap') -gt 200 ]" || return 1
  lab_stop tcpdump-init
  python3 -c 'import sys; d = open(sys.argv[1], "rb").read(); print(d[82:230].hex())' \
    "$LAB_DIR/init.pcap" >"$1"
  [ "$(head -c2 "$1")" = 01 ]
}

# agent_roam_setup [EXTRA_INTERFACE_OPTIONS...]: wgroam config for r1 (plain Linux:
# no uci, radvd delegation) under $LAB_DIR/r1/.
agent_roam_setup() {
  local d=$LAB_DIR/r1 line
  mkdir -p "$d/run" || return 1
  {
    echo "config agent 'agent'"
    echo "	option role 'roam'"
    echo "	option uci '0'"
    echo "	option state_dir '$d/run'"
    echo "	option state_file '$d/state.json'"
    echo
    echo "config interface 'wg1'"
    echo "	option hub_key '$(lab_r2_pubkey)'"
    echo "	list endpoint '$LAB_R2_WAN4:$LAB_R2_PORT'"
    echo "	option prefix '2001:db8:100:1::/64'"
    echo "	option tunnel_addr '$LAB_R1_TUN6'"
    echo "	option hub_tunnel_addr '$LAB_R2_TUN6'"
    echo "	option delegate 'radvd'"
    echo "	list downstream 'lan'"
    for line in "$@"; do echo "	$line"; done
  } >"$d/wgroam.conf" || return 1
}

agent_roam_start() {
  local bin d=$LAB_DIR/r1
  bin=$(agent_bin) || return 1
  lab_spawn agent-r1 r1 "$bin" run --config "$d/wgroam.conf" --stderr || return 1
  if ! lab_wait_for 5 test -s "$d/run/status.json"; then
    echo "agent: roam did not write status within 5 s; log:" >&2
    cat "$LAB_DIR/logs/agent-r1.log" >&2
    return 1
  fi
}

agent_roam_status() { "$(agent_bin)" status --json --state-dir "$LAB_DIR/r1/run"; }
agent_roam_log() { cat "$LAB_DIR/logs/agent-r1.log"; }

# roam_lab_prepare: hands r1's IPv6 routing and the LAN's addressing to the agent:
# removes the lab's own default route on r1 and the LAN client's static address and
# route (the client then configures itself from r1's router advertisements).
roam_lab_prepare() {
  ip -n wgr-r1 -6 route del ::/0 from 2001:db8:100::/48 dev wg1 2>/dev/null ||
    ip -n wgr-r1 -6 route del ::/0 dev wg1 2>/dev/null || true
  ip -n wgr-lan -6 route del ::/0 via "$LAB_R1_LAN6" 2>/dev/null || true
  ip -n wgr-lan -6 addr del "$LAB_LAN6/64" dev eth0 2>/dev/null || true
  ip netns exec wgr-lan sysctl -q -w net.ipv6.conf.eth0.accept_ra=2 >/dev/null
}

# roam_lab_start_both: lab up, hub agent on r2 and roam agent (radvd delegation) on
# r1; waits until the LAN client has its address from the delegated prefix and the
# internet host reaches it. Sets ADDR (that address) and T0 (timeline start).
roam_lab_start_both() {
  lab_up
  T0=$(agent_ms)
  roam_lab_prepare
  agent_hub_setup
  agent_hub_start
  agent_roam_setup
  agent_roam_start
  lab_wait_for 10 has_lan_slaac || fail "LAN client got no address"
  ADDR=$(lan_slaac_addr)
  lab_wait_for 5 ping_ok inet "$ADDR" || fail "inbound IPv6 to $ADDR does not work at start"
}

# lan_slaac_addr: the LAN client's address from the delegated /64 (RA), if any.
lan_slaac_addr() {
  ip -n wgr-lan -6 -o addr show dev eth0 scope global dynamic 2>/dev/null |
    awk '$4 ~ /^2001:db8:100:1:/ { sub(/\/.*/, "", $4); print $4; exit }'
}
has_lan_slaac() { [ -n "$(lan_slaac_addr)" ]; }

# roam_delegation_is STATE: the roam agent reports delegation STATE.
roam_delegation_is() { [ "$(agent_roam_status | jq -r '.interfaces[0].delegation.state')" = "$1" ]; }

# nat_block_wireguard / nat_unblock_wireguard: the NAT drops (or passes again)
# WireGuard to the hub: the tunnel is down without any interface change.
nat_block_wireguard() {
  ip netns exec wgr-nat nft -f - <<'EOF2'
table ip wgr_block {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    udp dport 51820 drop
    udp sport 51820 drop
  }
}
EOF2
}
nat_unblock_wireguard() { ip netns exec wgr-nat nft delete table ip wgr_block 2>/dev/null || true; }

# agent_roam_setup_uci [EXTRA...]: OpenWrt mode for r1: a uci tree (network with
# wg1, its hub peer section and lan) and the netifd/odhcpd model
# (tests/netifd-model): its `ubus` is what the agent gets as WGROAM_UBUS_BIN, its
# netifd reads the same uci tree (save dir included) with the real uci tool, and its
# odhcpd drives a real radvd on r1's LAN device, so the LAN client gets real RAs.
# EXTRA lines go into the agent's interface section. Environment:
#   NETIFD_MODEL_HANDLER  sh (default: OpenWrt's wireguard.sh) or ucode (wireguard.uc)
#   R1_LAN_IP6ASSIGN      lan's ip6assign (default 64; "none": no such option)
#   R1_ODHCPD             1 (default) runs the odhcpd model, 0 leaves it stopped
# r1's LAN address 2001:db8:100:1::1 (lab default) is removed: netifd owns lan's IPv6
# addresses (it adds the assignment's ::1). No ULA on lan.
agent_roam_setup_uci() {
  local d=$LAB_DIR/r1 line uci assign=${R1_LAN_IP6ASSIGN:-64}
  mkdir -p "$d/etc" "$d/save" "$d/run" "$d/bin" || return 1
  uci=$(agent_uci_bin) || return 1
  {
    cat <<EOF2
config interface 'wan'
	option device 'wan'
	option proto 'dhcp'

config interface 'lan'
	option device 'lan'
	option proto 'static'
	option ipaddr '$LAB_R1_LAN4'
	option netmask '255.255.255.0'
EOF2
    if [ "$assign" != none ]; then printf "\toption ip6assign '%s'\n" "$assign"; fi
    cat <<EOF2

config interface 'wg1'
	option proto 'wireguard'
	option private_key '(in $LAB_DIR/keys/r1.key)'
	list addresses '$LAB_R1_TUN6/64'

config wireguard_wg1 'hub'
	option public_key '$(lab_r2_pubkey)'
	option endpoint_host '$LAB_R2_WAN4'
	option endpoint_port '$LAB_R2_PORT'
	list allowed_ips '::/0'
EOF2
  } >"$d/etc/network" || return 1
  ip -n wgr-r1 -6 addr del "$LAB_R1_LAN6/64" dev lan 2>/dev/null || true
  cat >"$d/bin/ubus" <<EOF2 || return 1
#!/bin/sh
exec /usr/bin/python3 '$_agent_root/tests/netifd-model/netifd_model.py' ubus '$d/model' "\$@"
EOF2
  chmod +x "$d/bin/ubus" || return 1
  lab_exec r1 /usr/bin/python3 "$_agent_root/tests/netifd-model/netifd_model.py" init "$d/model" \
    --uci "$uci" --confdir "$d/etc" --savedir "$d/save" \
    --handler "${NETIFD_MODEL_HANDLER:-sh}" || return 1
  lab_spawn netifd-model r1 /usr/bin/python3 "$_agent_root/tests/netifd-model/netifd_model.py" \
    netifd "$d/model" || return 1
  if [ "${R1_ODHCPD:-1}" = 1 ]; then r1_odhcpd_start || return 1; fi
  {
    echo "config agent 'agent'"
    echo "	option role 'roam'"
    echo "	option state_dir '$d/run'"
    echo "	option state_file '$d/state.json'"
    echo
    echo "config interface 'wg1'"
    echo "	option prefix '2001:db8:100:1::/64'"
    echo "	option hub_tunnel_addr '$LAB_R2_TUN6'"
    for line in "$@"; do echo "	$line"; done
  } >"$d/wgroam.conf" || return 1
}

# r1_odhcpd_start / r1_odhcpd_stop: the odhcpd model (its `dhcp` ubus object exists
# only while it runs; its radvd goes with it).
r1_odhcpd_start() {
  lab_spawn odhcpd-model r1 /usr/bin/python3 "$_agent_root/tests/netifd-model/netifd_model.py" \
    odhcpd "$LAB_DIR/r1/model" || return 1
  lab_wait_for 5 test -s "$LAB_DIR/r1/model/ipv6ra.json" ||
    { echo "odhcpd model did not start: $(cat "$(lab_log odhcpd-model)")" >&2; return 1; }
}
r1_odhcpd_stop() { lab_stop odhcpd-model; }

# r1_netifd_restart: /etc/init.d/network restart on r1 (model: flushes IPv6 addresses
# and routes, forgets dynamic interfaces). r1_odhcpd_reload: /etc/init.d/odhcpd reload.
r1_netifd_restart() {
  lab_exec r1 /usr/bin/python3 "$_agent_root/tests/netifd-model/netifd_model.py" ctl "$LAB_DIR/r1/model" restart-netifd
}
r1_odhcpd_reload() { kill -HUP "$(lab_pid odhcpd-model)"; }

# r1_ubus ARGS...: the model's ubus, in r1 (as a user on the router would type it).
r1_ubus() { lab_exec r1 "$LAB_DIR/r1/bin/ubus" "$@"; }

# r1_model_events [KIND...]: what the model recorded (JSON lines), e.g. link-recreated.
r1_model_events() {
  /usr/bin/python3 "$_agent_root/tests/netifd-model/netifd_model.py" ctl "$LAB_DIR/r1/model" events "$@"
}

# ra_json CAPTURE_NAME: the router advertisements of a lab_capture_start capture (made
# with -vvv) as JSON lines (tests/lab/ra_capture.py).
ra_json() { /usr/bin/python3 "$_agent_root/tests/lab/ra_capture.py" <"$(lab_capture_file "$1")"; }

agent_roam_start_uci() {
  local bin uci d=$LAB_DIR/r1
  bin=$(agent_bin) || return 1
  uci=$(agent_uci_bin) || return 1
  lab_spawn agent-r1 r1 env WGROAM_UCI_BIN="$uci" WGROAM_UBUS_BIN="$d/bin/ubus" "$bin" run \
    --config "$d/wgroam.conf" --stderr --uci-confdir "$d/etc" --uci-savedir "$d/save" || return 1
  lab_wait_for 5 test -s "$d/run/status.json" || { agent_roam_log >&2; return 1; }
}

# r1_uci ARGS...: the real uci tool on r1's tree (committed + staged).
r1_uci() { "$(agent_uci_bin)" -c "$LAB_DIR/r1/etc" -t "$LAB_DIR/r1/save" "$@"; }

# r1_rehandshake: r1 forgets its session with r2 (the hub peer is removed and added
# again with its configuration, as a restart of r1's WireGuard does); its next packet
# starts a new handshake with a fresh timestamp.
r1_rehandshake() {
  local pub ka
  pub=$(lab_r2_pubkey) || return 1
  ka=$(cat "$LAB_DIR/keepalive") || return 1
  ip netns exec wgr-r1 wg set wg1 peer "$pub" remove &&
    ip netns exec wgr-r1 wg set wg1 peer "$pub" endpoint "$LAB_R2_WAN4:$LAB_R2_PORT" \
      allowed-ips ::/0 persistent-keepalive "$ka"
}

# record_r1_start / record_r1_stop INIT_HEX TRANSPORT_HEX: an attacker on r1's path
# records r1's handshake initiations and transport packets to the hub (pcap on r2's
# WAN), then writes each kind as hex lines (see spoof.py extract).
record_r1_start() {
  lab_spawn tcpdump-rec r2 tcpdump --immediate-mode -n -U -i wan -w "$LAB_DIR/rec.pcap" \
    "src host $LAB_NAT_OUT4 and udp dst port 51820 and (udp[8] = 1 or udp[8] = 4)"
  lab_wait_for 5 test -s "$LAB_DIR/rec.pcap"
}
record_r1_stop() {
  sleep 0.2
  lab_stop tcpdump-rec
  python3 "$_agent_root/tests/e2e/spoof.py" extract "$LAB_DIR/rec.pcap" "$1" "$2"
}

# endpoint_sampler_start / endpoint_sampler_stop: r2's kernel endpoint of r1, read
# every 20 ms into $LAB_DIR/endpoints.log (one line per read).
endpoint_sampler_start() {
  : >"$LAB_DIR/endpoints.log"
  lab_spawn sampler r2 sh -c "while :; do wg show wg0 endpoints >>'$LAB_DIR/endpoints.log' 2>/dev/null; sleep 0.02; done"
}
endpoint_sampler_stop() { lab_stop sampler; }
