#!/usr/bin/env bash
# Helpers for the pairing tests (issue 14). Source after lab.sh and agent.sh.
#
# A "fresh" hub: r2's wg0 with its key, port and tunnel address but no peer, uci
# `network` with wg0 only and wgroam with a pool. A "fresh" travel router: r1's wg1
# device exists (wireguard-go, as the lab makes it) but carries no key, peer or
# address; uci `network` has wan and lan only, `firewall` has the usual lan and wan
# zones, and there is no /etc/config/wgroam.
#
# r1's netifd is played by $LAB_DIR/r1/bin/ubus: `network reload` does what netifd's
# wireguard proto handler does for each `proto wireguard` interface in uci (key,
# listen port, peers with endpoint/allowed_ips/keepalive, addresses, link up) and
# removes what it configured when the interface left uci; every call is logged in
# $LAB_DIR/r1/ubus.log. The agent's init script is $LAB_DIR/r1/bin/init (start,
# restart, stop, enable) running `wgroam run` in wgr-r1 on r1's uci tree.

PAIR_POOL=2001:db8:100::/48

pair_hub_fresh() {
  local d=$LAB_DIR/r2
  ip netns exec wgr-r2 wg set wg0 peer "$(lab_r1_pubkey)" remove || return 1
  ip -n wgr-r2 -6 route del 2001:db8:100:1::/64 dev wg0 2>/dev/null || true
  mkdir -p "$d/etc" "$d/save" "$d/run" || return 1
  cat >"$d/etc/network" <<EOF2 || return 1
config interface 'wan'
	option device 'wan'
	option proto 'static'
	option ipaddr '$LAB_R2_WAN4'
	option netmask '255.255.255.0'

config interface 'wg0'
	option proto 'wireguard'
	option private_key '(in $LAB_DIR/keys/r2.key)'
	option listen_port '$LAB_R2_PORT'
	list addresses '$LAB_R2_TUN6/64'
EOF2
  cat >"$d/wgroam.conf" <<EOF2 || return 1
config agent 'agent'
	option role 'hub'
	option state_dir '$d/run'
	option state_file '$d/state.json'

config interface 'wg0'
	option capture_device 'wan'
	option pool '$PAIR_POOL'
EOF2
}

# pair_r1_fresh: r1's wg1 emptied, its uci tree, the ubus and init stand-ins.
pair_r1_fresh() {
  ip netns exec wgr-r1 wg set wg1 peer "$(lab_r2_pubkey)" remove || return 1
  ip -n wgr-r1 addr flush dev wg1 || return 1
  pair_router_tree r1
}

# pair_r3_up: a second travel router, netns wgr-r3 straight on the internet bridge
# (198.51.100.4, no NAT), with a wireguard-go wg3 carrying nothing, a LAN device and
# its own uci tree under $LAB_DIR/r3. pair_r3_down removes the netns.
pair_r3_up() {
  ip netns add wgr-r3 || return 1
  ip netns exec wgr-r3 sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.forwarding=1 >/dev/null || return 1
  ip -n wgr-inet link add r3 type veth peer name wan netns wgr-r3 || return 1
  ip -n wgr-inet link set r3 master br0 up || return 1
  # The new bridge port must not change the internet host's MAC (lab.sh's bridge
  # trap): r2's neighbour entry would blackhole everything through the hub.
  if [ "$(ip -n wgr-inet -j link show br0 | jq -r '.[0].address')" != "$LAB_INET_MAC" ]; then
    echo "pair_r3_up: the internet bridge's MAC changed when r3 was attached" >&2
    return 1
  fi
  _lab_ip wgr-r3 <<'EOF2' || return 1
link set lo up
link set wan up
addr add 198.51.100.4/24 dev wan
route add default via 198.51.100.1
link add lan type veth peer name lan-peer
link set lan-peer up
link set lan up
addr add 100.127.3.1/24 dev lan
EOF2
  _lab_wg_start wgr-r3 wg3 || return 1
  pair_router_tree r3
}
pair_r3_down() {
  lab_stop agent-r3 2>/dev/null || true
  lab_stop odhcpd-model-r3 2>/dev/null || true
  lab_stop netifd-model-r3 2>/dev/null || true
  lab_stop wireguard-go-wg3 2>/dev/null || true
  rm -f "$LAB_WG_SOCK_DIR/wg3.sock"
  ip netns del wgr-r3 2>/dev/null || true
}

# pair_router_tree NAME: a fresh travel router's uci tree under $LAB_DIR/NAME
# (network with wan and lan, firewall with lan and wan zones, no wgroam) and its
# ubus and init stand-ins (the agent's pid in $LAB_DIR/pids/agent-NAME.pid).
pair_router_tree() {
  local who=$1 d=$LAB_DIR/$1 uci bin
  uci=$(agent_uci_bin) || return 1
  bin=$(agent_bin) || return 1
  mkdir -p "$d/etc" "$d/save" "$d/run" "$d/bin" || return 1
  cat >"$d/etc/network" <<EOF2 || return 1
config interface 'wan'
	option device 'wan'
	option proto 'dhcp'

config interface 'lan'
	option device 'lan'
	option proto 'static'
	option ipaddr '$LAB_R1_LAN4'
	option netmask '255.255.255.0'
	option ip6assign '64'
EOF2
  cat >"$d/etc/firewall" <<'EOF2' || return 1
config defaults
	option input 'REJECT'
	option output 'ACCEPT'
	option forward 'REJECT'

config zone
	option name 'lan'
	list network 'lan'
	option input 'ACCEPT'
	option output 'ACCEPT'
	option forward 'ACCEPT'

config zone
	option name 'wan'
	list network 'wan'
	option input 'REJECT'
	option output 'ACCEPT'
	option forward 'REJECT'
	option masq '1'

config forwarding
	option src 'lan'
	option dest 'wan'
EOF2
  # r1 has no /etc/config/wgroam; r3 has the package's (agent without a role, an
  # empty 'wg0' placeholder).
  rm -f "$d/etc/wgroam"
  if [ "$who" = r3 ]; then cp "$_agent_root/openwrt/files/wgroam.config" "$d/etc/wgroam" || return 1; fi
  : >"$d/ubus.log"
  cat >"$d/bin/ubus" <<EOF2 || return 1
#!/bin/bash
# ubus stand-in: netifd's wireguard proto handler on reload (see pair.sh).
echo "ubus \$*" >>"$d/ubus.log"
model() {
  if [ -d "$d/model" ]; then exec /usr/bin/python3 "$_agent_root/tests/netifd-model/netifd_model.py" ubus "$d/model" "\$@"; fi
  exit 0
}
call=\$*
# ubus's own options (-t TIMEOUT, -S) come first.
case "\$call" in "-t "*) call=\${call#-t * } ;; esac
case "\$call" in "-S "*) call=\${call#-S } ;; esac
[ "\$call" = "call network reload" ] || model "\$@"
u() { "$uci" -c "$d/etc" -t "$d/save" "\$@"; }
state=$d/wg-applied
for ifc in \$(u show network 2>/dev/null | sed -n "s/^network\\.\\([^.=]*\\)=interface\$/\\1/p"); do
  [ "\$(u -q get network.\$ifc.proto)" = wireguard ] || continue
  conf=\$(u show network | grep -E "^network\\.(\$ifc\\.|[^.=]*\\.|[^.=]*=wireguard_\$ifc\$)" | grep -v "ip6prefix")
  if [ -f "\$state.\$ifc" ] && [ "\$(cat "\$state.\$ifc")" = "\$conf" ]; then continue; fi
  key=\$(u -q get network.\$ifc.private_key)
  printf '%s\n' "\$key" >"$d/wg.key"
  wg set "\$ifc" private-key "$d/wg.key" || exit 1
  rm -f "$d/wg.key"
  for s in \$(u show network | sed -n "s/^network\\.\\([^.=]*\\)=wireguard_\$ifc\$/\\1/p"); do
    pk=\$(u -q get network.\$s.public_key)
    ep="\$(u -q get network.\$s.endpoint_host):\$(u -q get network.\$s.endpoint_port)"
    ka=\$(u -q get network.\$s.persistent_keepalive || echo 0)
    ips=\$(u -q get network.\$s.allowed_ips | tr ' ' ',')
    wg set "\$ifc" peer "\$pk" endpoint "\$ep" allowed-ips "\$ips" persistent-keepalive "\$ka" || exit 1
  done
  for a in \$(u -q get network.\$ifc.addresses); do ip addr replace "\$a" dev "\$ifc" nodad; done
  ip link set "\$ifc" up
  echo "\$conf" >"\$state.\$ifc"
done
# An interface gone from uci: netifd tears it down (the device's config goes).
for f in "\$state".*; do
  [ -e "\$f" ] || continue
  ifc=\${f##*.}
  if [ "\$(u -q get network.\$ifc.proto)" != wireguard ]; then
    for pk in \$(wg show "\$ifc" peers); do wg set "\$ifc" peer "\$pk" remove; done
    ip addr flush dev "\$ifc"
    ip -6 route flush dev "\$ifc" 2>/dev/null
    rm -f "\$f"
  fi
done
model "\$@"
EOF2
  cat >"$d/bin/init" <<EOF2 || return 1
#!/bin/bash
# /etc/init.d/wgroam stand-in: the agent on this uci tree, its pid where lab_down finds it.
pidf=$LAB_DIR/pids/agent-$who.pid
stop() { [ -f "\$pidf" ] && kill "\$(cat "\$pidf")" 2>/dev/null; rm -f "\$pidf"; sleep 0.2; }
start() {
  WGROAM_UCI_BIN=$uci WGROAM_UBUS_BIN=$d/bin/ubus setsid $bin run --config $d/etc/wgroam --stderr \\
    --state-dir $d/run --uci-confdir $d/etc --uci-savedir $d/save >>$LAB_DIR/logs/agent-$who.log 2>&1 </dev/null &
  echo \$! >"\$pidf"
}
case "\$1" in
enable) : ;;
start) start ;;
restart) stop; start ;;
stop) stop ;;
esac
EOF2
  chmod +x "$d/bin/ubus" "$d/bin/init"
}

# r2_uci ARGS...: the real uci tool on r2's tree.
r2_uci() { "$(agent_uci_bin)" -c "$LAB_DIR/r2/etc" -t "$LAB_DIR/r2/save" "$@"; }

# pair_invite ARGS...: `wgroam invite` on the hub; prints the invite line.
pair_invite() {
  ip netns exec wgr-r2 env WGROAM_UCI_BIN="$(agent_uci_bin)" "$(agent_bin)" \
    --uci-confdir "$LAB_DIR/r2/etc" --uci-savedir "$LAB_DIR/r2/save" \
    invite --config "$LAB_DIR/r2/wgroam.conf" --endpoint "$LAB_R2_WAN4:$LAB_R2_PORT" "$@"
}

# pair_join NS DIR ARGS...: `wgroam join` in netns NS on the uci tree DIR.
pair_join_in() {
  local ns=$1 d=$2
  shift 2
  ip netns exec "$ns" env WGROAM_UCI_BIN="$(agent_uci_bin)" WGROAM_UBUS_BIN="$d/bin/ubus" \
    WGROAM_INIT="$d/bin/init" "$(agent_bin)" --uci-confdir "$d/etc" --uci-savedir "$d/save" \
    join --state-dir "$d/run" "$@"
}
pair_join() { pair_join_in wgr-r1 "$LAB_DIR/r1" "$@" --interface wg1; }

# pair_snapshot DIR NAME / pair_same DIR NAME: config files byte-identical.
pair_snapshot() { (cd "$1" && for f in network firewall wgroam; do if [ -e "etc/$f" ]; then sha256sum "etc/$f"; else echo "absent etc/$f"; fi; done) >"$1/$2.sum"; }
pair_same() {
  local now
  now=$(cd "$1" && for f in network firewall wgroam; do if [ -e "etc/$f" ]; then sha256sum "etc/$f"; else echo "absent etc/$f"; fi; done)
  [ "$now" = "$(cat "$1/$2.sum")" ]
}

# pair_model WHO (r1 or r3): where the netifd/odhcpd model exists
# (tests/netifd-model), WHO's netifd and odhcpd are the model (on WHO's fresh uci
# tree): the stand-in above hands every ubus call to it after doing the wireguard
# handler's part, and its odhcpd drives a real radvd on WHO's LAN device, so r1's
# LAN client configures itself from the delegated prefix. Returns 1 where the model
# does not exist.
pair_model() {
  local who=$1 d=$LAB_DIR/$1 m=$_agent_root/tests/netifd-model/netifd_model.py uci
  [ -f "$m" ] || return 1
  uci=$(agent_uci_bin) || return 1
  if [ "$who" = r1 ]; then ip -n wgr-r1 -6 addr del "$LAB_R1_LAN6/64" dev lan 2>/dev/null || true; fi
  lab_exec "$who" /usr/bin/python3 "$m" init "$d/model" --uci "$uci" --confdir "$d/etc" \
    --savedir "$d/save" --handler sh || return 1
  lab_spawn "netifd-model-$who" "$who" /usr/bin/python3 "$m" netifd "$d/model" || return 1
  lab_spawn "odhcpd-model-$who" "$who" /usr/bin/python3 "$m" odhcpd "$d/model" || return 1
  lab_wait_for 5 test -s "$d/model/ipv6ra.json" ||
    { echo "odhcpd model did not start: $(cat "$(lab_log "odhcpd-model-$who")")" >&2; return 1; }
}
