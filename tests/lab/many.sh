#!/usr/bin/env bash
# Many roaming peers for the wgroam lab. Source AFTER tests/lab/lab.sh, once lab_up
# has built the lab:
#
#   . tests/lab/lab.sh; . tests/lab/many.sh
#   trap 'many_down; lab_down' EXIT
#   lab_up
#   many_up 50                  # 50 peers, wgp0..wgp49, each a peer of r2's wg0
#   many_send                   # every peer pings r2 through its tunnel (parallel)
#   many_nat_ports              # "INDEX OUTSIDE_PORT" per peer, from wgr-nat's conntrack
#   many_down                   # netns, wireguard-go processes, stale UAPI sockets
#
# Layout (adds to tests/lab/README.md, changes nothing of it):
#
#   wgr-nat  lan   100.64.0.1/24 ── wgr-r1 (as before)
#            peers (no address)  ── wgr-peers wan 100.64.0.200/24, default via 100.64.0.1
#            route 100.64.0.128/25 dev peers (more specific than lan's /24)
#   wgr-peers: wgp<i> (wireguard-go), i = 0..N-1
#            private key $LAB_DIR/many/wgp<i>.key, listen port 40000+i,
#            address 2001:db8:100:2::<i+1 in hex>/128, peer r2 at 198.51.100.2:51820
#            with allowed_ips 2001:db8:100::/64; rule "from <address> lookup 1000+i",
#            table 1000+i: 2001:db8:100::/64 dev wgp<i>.
#   wgr-r2:  wg0 gets one peer per wgp<i> (allowed_ips its /128, no endpoint: learned)
#            and the route 2001:db8:100:2::/64 dev wg0.
#
# All peers share one inside address and thus one NAT outside address
# (198.51.100.3); they differ by their UDP port, so the NAT maps each to its own
# outside port and a rebind (lab_nat_rebind) moves all of them at once.
#
# Traps:
# - wgr-nat answers ARP for 100.64.0.1 (an address of its `lan`) on `peers` as well:
#   Linux replies for any local address on any interface (arp_ignore=0), so `peers`
#   needs no address of its own.
# - wireguard-go's TUN devices send MLD reports at link-up; with allowed_ips limited to
#   2001:db8:100::/64 they match no peer and are dropped, so no peer handshakes before
#   a test makes it send.
# - /run/wireguard/*.sock is global: the names wgp<i> must not clash with wg0/wg1, and
#   many_down removes sockets nobody serves any more (wireguard-go does not on SIGKILL).
# - wireguard-go processes are started with lab_spawn (names wireguard-go-wgp<i>), so
#   lab_down also stops them; many_down still has to delete the wgr-peers netns, which
#   lab_down does not know.

MANY_NETNS=wgr-peers
MANY_ADDR4=100.64.0.200
MANY_PORT_BASE=40000
MANY_TUN6_NET=2001:db8:100:2
MANY_TABLE_BASE=1000
# Upper bound: ports 40000.. (below the netns' ephemeral range, 50000..) and one
# routing table per peer; the NAT has 1000 ports.
MANY_MAX=500

_many_err() { echo "many: $*" >&2; }

# many_count: number of peers many_up created.
many_count() { cat "$LAB_DIR/many/count" 2>/dev/null || echo 0; }

# many_addr6 I: peer I's tunnel address.
many_addr6() { printf '%s::%x\n' "$MANY_TUN6_NET" $(($1 + 1)); }

# many_port I: peer I's UDP (listen) port inside the NAT.
many_port() { echo $((MANY_PORT_BASE + $1)); }

# many_pubkey I: peer I's public key.
many_pubkey() { cat "$LAB_DIR/many/wgp$1.pub"; }

# many_up N: adds N peers (see the layout above). Needs a lab built by lab_up.
many_up() {
  local n=${1:-}
  case "$n" in
  '' | *[!0-9]*)
    _many_err "usage: many_up N (N peers, 1..$MANY_MAX)"
    return 2
    ;;
  esac
  if [ "$n" -lt 1 ] || [ "$n" -gt "$MANY_MAX" ]; then
    _many_err "N must be 1..$MANY_MAX, got $n"
    return 2
  fi
  if [ ! -e /run/netns/wgr-nat ] || [ ! -e /run/netns/wgr-r2 ]; then
    _many_err "no lab: run lab_up first"
    return 1
  fi
  local t0
  t0=$(_lab_ms)
  many_down
  if ! _many_build "$n"; then
    _many_err "up failed; tearing down the peers"
    many_down
    return 1
  fi
  echo "many: $n peers up in $(($(_lab_ms) - t0)) ms"
}

_many_build() {
  local n=$1 i d=$LAB_DIR/many r2pub
  mkdir -p "$d" || return 1
  chmod 700 "$d" || return 1
  r2pub=$(lab_r2_pubkey) || return 1

  ip netns add "$MANY_NETNS" || return 1
  _lab_sysctl "$MANY_NETNS" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 || return 1
  # wireguard-go binds a random port until `wg set ... listen-port`: keep those out of
  # the peers' fixed ports (40000..), or one of them takes another's ("Address already
  # in use"). Per netns; IPv6 uses the same range.
  _lab_sysctl "$MANY_NETNS" "net.ipv4.ip_local_port_range=50000 60999" || return 1
  _lab_ip wgr-nat <<EOF || return 1
link add peers type veth peer name wan netns $MANY_NETNS
link set peers up
route add 100.64.0.128/25 dev peers
EOF
  _lab_sysctl "$MANY_NETNS" net.ipv6.conf.wan.disable_ipv6=1 || return 1
  _lab_ip "$MANY_NETNS" <<EOF || return 1
link set lo up
link set wan up
addr add $MANY_ADDR4/24 dev wan
route add default via $LAB_NAT_IN4
EOF

  # Keys first (two short processes per peer), then all wireguard-go at once.
  for ((i = 0; i < n; i++)); do
    (umask 077 && wg genkey >"$d/wgp$i.key") || return 1
    wg pubkey <"$d/wgp$i.key" >"$d/wgp$i.pub" || return 1
  done
  for ((i = 0; i < n; i++)); do
    if [ -S "$LAB_WG_SOCK_DIR/wgp$i.sock" ] && wg show "wgp$i" >/dev/null 2>&1; then
      _many_err "$LAB_WG_SOCK_DIR/wgp$i.sock is served by a process this lab does not know"
      return 1
    fi
    _lab_spawn "wireguard-go-wgp$i" "$MANY_NETNS" env LOG_LEVEL=error wireguard-go -f "wgp$i" || return 1
  done
  echo "$n" >"$d/count" || return 1
  for ((i = 0; i < n; i++)); do
    if ! lab_wait_for 10 _lab_wg_ready "$MANY_NETNS" "wgp$i" "$(lab_pid "wireguard-go-wgp$i")" ||
      ! _lab_wg_ready "$MANY_NETNS" "wgp$i"; then
      _many_err "wireguard-go wgp$i did not come up: $(tail -n 5 "$(lab_log "wireguard-go-wgp$i")")"
      return 1
    fi
  done

  local out batch_p="" batch_r2="" addr
  for ((i = 0; i < n; i++)); do
    addr=$(many_addr6 "$i")
    if ! out=$(ip netns exec "$MANY_NETNS" wg set "wgp$i" private-key "$d/wgp$i.key" \
      listen-port "$(many_port "$i")" \
      peer "$r2pub" endpoint "$LAB_R2_WAN4:$LAB_R2_PORT" allowed-ips "2001:db8:100::/64" 2>&1); then
      _many_err "wg set wgp$i: $out"
      return 1
    fi
    batch_p+="addr add $addr/128 dev wgp$i nodad
link set wgp$i up
route add 2001:db8:100::/64 dev wgp$i table $((MANY_TABLE_BASE + i))
rule add from $addr lookup $((MANY_TABLE_BASE + i)) priority $((MANY_TABLE_BASE + i))
"
    if ! out=$(ip netns exec wgr-r2 wg set wg0 peer "$(many_pubkey "$i")" allowed-ips "$addr/128" 2>&1); then
      _many_err "wg set wg0 peer wgp$i: $out"
      return 1
    fi
  done
  # The -6 family applies to the rules; routes and addresses are IPv6 by their text.
  if ! out=$(ip -6 -n "$MANY_NETNS" -batch - <<<"$batch_p" 2>&1); then
    _many_err "ip batch in $MANY_NETNS failed: $out"
    return 1
  fi
  batch_r2="route add $MANY_TUN6_NET::/64 dev wg0"
  _lab_ip wgr-r2 <<<"$batch_r2" || return 1
}

# many_ping I [TIMEOUT_S]: peer I pings r2's tunnel address once through its tunnel.
many_ping() {
  ip netns exec "$MANY_NETNS" ping -6 -n -c1 -W"${2:-2}" -I "$(many_addr6 "$1")" "$LAB_R2_TUN6" >/dev/null 2>&1
}

# many_send [TIMEOUT_S]: every peer pings r2 once, all in parallel; prints the indices
# of the peers whose ping failed and fails if any did.
many_send() {
  local n i rc=0 timeout=${1:-3}
  n=$(many_count)
  local -a pids=()
  for ((i = 0; i < n; i++)); do
    many_ping "$i" "$timeout" &
    pids[i]=$!
  done
  local bad=()
  for ((i = 0; i < n; i++)); do
    wait "${pids[i]}" || bad+=("$i")
  done
  if [ "${#bad[@]}" -gt 0 ]; then
    echo "${bad[*]}"
    rc=1
  fi
  return "$rc"
}

# many_nat_ports: one line "I OUTSIDE_PORT" per peer that has a NAT mapping towards
# r2 (from one conntrack dump of wgr-nat).
many_nat_ports() {
  ip netns exec wgr-nat conntrack -L -p udp -s "$MANY_ADDR4" -d "$LAB_R2_WAN4" \
    --dport "$LAB_R2_PORT" 2>/dev/null |
    awk -v base="$MANY_PORT_BASE" '{
      s = ""; o = ""; n = 0
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^sport=/ && s == "") { s = substr($i, 7) }
        if ($i ~ /^dport=/) { n++; if (n == 2) o = substr($i, 7) }
      }
      if (s != "" && o != "") print s - base, o
    }' | sort -n
}

# many_down: removes the peers (idempotent; safe before or after lab_down). Leaves a
# lab that another live process owns alone, like lab_down.
many_down() {
  if declare -F _lab_is_ours_or_free >/dev/null && ! _lab_is_ours_or_free; then
    _many_err "not tearing down: the lab is owned by live pid $(_lab_live_owner | cut -d' ' -f1)"
    return 0
  fi
  local f s ifc
  if [ -d "$LAB_DIR/pids" ]; then
    for f in "$LAB_DIR"/pids/wireguard-go-wgp*.pid; do
      [ -e "$f" ] || continue
      _lab_kill_pidfile "$f"
    done
  fi
  if [ -e "/run/netns/$MANY_NETNS" ]; then
    ip netns delete "$MANY_NETNS" 2>/dev/null || _many_err "could not delete netns $MANY_NETNS"
  fi
  # The veth pair died with the netns; the route with it. Stale UAPI sockets:
  for s in "$LAB_WG_SOCK_DIR"/wgp*.sock; do
    [ -S "$s" ] || continue
    ifc=$(basename "$s" .sock)
    if ! wg show "$ifc" >/dev/null 2>&1; then
      rm -f "$s"
    fi
  done
  rm -rf "${LAB_DIR:?}/many"
  return 0
}
