#!/usr/bin/env bash
# wgroam network lab: five network namespaces, veth links, a bridge and userspace
# WireGuard (wireguard-go), laid out as in tests/lab/README.md.
#
# Library use (from a bash test running as root):
#   . tests/lab/lab.sh
#   trap lab_down EXIT
#   lab_up [KEEPALIVE]          # KEEPALIVE: r1's persistent_keepalive in s, default off
#   lab_exec r1 wg show wg1     # or lab_exec wgr-r1 ...
#   lab_wait_for 10 lab_exec lan ping -6 -c1 -W1 2001:db8:ffff::1
#   lab_nat_rebind; lab_uplink_change; lab_nat_port_of_r1; lab_r2_endpoint
#   lab_down
# Human use:
#   tests/lab/lab.sh up [KEEPALIVE] | down | status | nat-rebind | uplink-change [--raw]
#
# Every wait is bounded; every process the lab starts is recorded by PID under
# /run/wgroam-lab/pids and killed by that PID in lab_down.
#
# Traps found while building this lab (keep them in mind when changing it):
# - nft refuses `masquerade to :30000-30999` without a transport protocol match
#   ("transport protocol mapping is only valid after transport protocol match"): the
#   rule needs `meta l4proto { tcp, udp }`; a second plain `masquerade random` rule
#   covers ICMP.
# - wireguard-go's UAPI sockets live in /run/wireguard/NAME.sock, which is NOT per
#   network namespace: the two routers need distinct interface names (wg0 on r2, wg1 on
#   r1), `wg` run in any netns talks to both, and only one lab can exist per machine.
#   This library therefore records an owner (PID + start time) in
#   /run/wgroam-lab.owner; lab_up waits (bounded, LAB_OWNER_WAIT s) while another live
#   process owns the lab, and lab_down leaves a lab it does not own alone.
# - wireguard-go unlinks its UAPI socket on SIGTERM, but not when it dies otherwise
#   (SIGKILL, SIGPIPE on a closed log pipe, crash): a stale wg0.sock/wg1.sock makes
#   `wg show` list a dead interface. lab_down removes them once nobody serves them.
# - wireguard-go's TUN device is multicast-capable, so the kernel sends MLDv2 reports
#   (to ff02::16) into the tunnel at link-up, with retransmissions (4 packets). On r1
#   (allowed_ips ::/0) they trigger a handshake by itself and reset WireGuard's timers:
#   without the rule, r2 knows r1's endpoint right after lab_up, before any traffic.
#   An nft rule in each router drops multicast ICMPv6 (MLD reports/done, router
#   solicitations) leaving the wg device, so timers behave as with kernel WireGuard.
# - A netns whose processes still run cannot really disappear: lab_down kills the
#   recorded PIDs first (TERM, then KILL after a bounded wait), then deletes the netns.
# - IPv6 duplicate address detection keeps new addresses "tentative" for ~1-2 s, during
#   which pings fail. accept_dad=0 per namespace plus `nodad` makes lab_up fast.
# - A process started in the background inherits the shell's stdout: when a test's
#   output goes to a pipe, a left-over wireguard-go keeps that pipe open forever. All lab
#   daemons write to log files under /run/wgroam-lab/logs instead.
# - Deleting r1's only WAN address also deletes its IPv4 default route: the uplink
#   change re-adds it. The address is swapped break-before-make (delete, then add),
#   like a real change of uplink; adding first would make the new address a secondary
#   that is deleted together with the primary (promote_secondaries is off by default).
# - wireguard-go keeps sending from a deleted address: it caches the source address
#   of its endpoint (IP_PKTINFO) and only forgets it when sendmsg fails with EINVAL,
#   but this kernel answers ENETUNREACH for a source address that is no longer local,
#   and its route listener only compares the outgoing interface (still `wan`). After
#   r1's WAN address changes, wg1 fails every send ("Failed to send data packet:
#   network is unreachable") until its endpoint is set again. Kernel WireGuard
#   re-checks the source address and falls back on its own. lab_uplink_change
#   emulates that by re-applying the unchanged endpoint (a `wg set ... endpoint` only
#   replaces the endpoint: no handshake, no timer change); `--raw` skips it.
# - `masquerade ... random` draws from only 1000 ports: a rebind gives the SAME port
#   again with probability 1/1000, so tests that need a new port must retry.
# - In a function called in a condition (`if f`, `f || g`), bash ignores `set -e`;
#   build steps below therefore check every command explicitly.
# - A Linux bridge without an explicitly set address takes the lowest MAC of its
#   ports, so adding a port (pair.sh's second travel router r3) can change the
#   internet host's MAC. r2's neighbour entry for 2001:db8:ffff::1 keeps the old MAC,
#   whose frames the host now drops as "other host", until NUD gives up on it (~8-10
#   s): everything through the hub (r1's and r3's pings) blackholes meanwhile, in
#   about one run of six (random MACs). A real upstream router's MAC does not change
#   when a customer connects: br0 gets a fixed address (LAB_INET_MAC).

LAB_DIR=${LAB_DIR:-/run/wgroam-lab}
LAB_OWNER_FILE=${LAB_OWNER_FILE:-/run/wgroam-lab.owner}
LAB_LOCK_FILE=${LAB_LOCK_FILE:-/run/wgroam-lab.lock}
LAB_OWNER_WAIT=${LAB_OWNER_WAIT:-240}
LAB_NETNS=(wgr-inet wgr-r2 wgr-nat wgr-r1 wgr-lan)
LAB_WG_SOCK_DIR=/run/wireguard
LAB_WG_IFACES=(wg0 wg1)

# Fixed addressing (tests/lab/README.md; everyone relies on it). For use by tests.
# shellcheck disable=SC2034
{
  LAB_INET4=198.51.100.1
  # The internet host's bridge MAC, fixed (see the bridge trap above; literal in lab_up).
  LAB_INET_MAC=02:77:72:00:00:01
  LAB_INET6=2001:db8:ffff::1
  LAB_R2_WAN4=198.51.100.2
  LAB_R2_WAN6=2001:db8:ffff::2
  LAB_R2_PORT=51820
  LAB_R2_TUN6=2001:db8:100::1
  LAB_NAT_OUT4=198.51.100.3
  LAB_NAT_IN4=100.64.0.1
  LAB_R1_WAN4_A=100.64.0.2
  LAB_R1_WAN4_B=100.64.0.3
  LAB_R1_TUN6=2001:db8:100::2
  LAB_R1_LAN4=100.127.1.1
  LAB_R1_LAN6=2001:db8:100:1::1
  LAB_LAN4=100.127.1.2
  LAB_LAN6=2001:db8:100:1::100
  LAB_NAT_PORT_MIN=30000
  LAB_NAT_PORT_MAX=30999
}

_lab_err() { echo "lab: $*" >&2; }

_lab_ms() { echo $(($(date +%s%N) / 1000000)); }

# Normalizes "r1" / "wgr-r1" to "wgr-r1".
_lab_ns() {
  case "$1" in
  wgr-*) echo "$1" ;;
  *) echo "wgr-$1" ;;
  esac
}

# lab_exec NS CMD...: runs CMD inside the lab namespace NS (r1 or wgr-r1).
lab_exec() {
  if [ "$#" -lt 2 ]; then
    _lab_err "usage: lab_exec NS CMD..."
    return 2
  fi
  local ns
  ns=$(_lab_ns "$1")
  shift
  ip netns exec "$ns" "$@"
}

# lab_wait_for TIMEOUT_S CMD...: runs CMD every 50 ms until it succeeds (return 0) or
# TIMEOUT_S seconds (may be fractional) have passed (return 1). CMD's output is
# discarded; CMD itself must be bounded (e.g. ping -c1 -W1).
lab_wait_for() {
  if [ "$#" -lt 2 ]; then
    _lab_err "usage: lab_wait_for TIMEOUT_S CMD..."
    return 2
  fi
  local timeout_s=$1 deadline
  shift
  deadline=$(($(_lab_ms) + $(awk -v t="$timeout_s" 'BEGIN { printf "%d", t * 1000 }')))
  while :; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [ "$(_lab_ms)" -ge "$deadline" ]; then
      return 1
    fi
    sleep 0.05
  done
}

# ---------------------------------------------------------------------------
# Ownership: one lab per machine (see traps above).

# Start time (clock ticks since boot) of PID, empty if it does not exist.
_lab_proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  # After "comm) ", fields start at 3 (state); start time is field 22 -> index 19.
  local -a fields
  read -r -a fields <<<"$stat"
  echo "${fields[19]:-}"
}

# Prints "PID START" of the current owner if it is alive, else nothing.
_lab_live_owner() {
  local pid start
  [ -r "$LAB_OWNER_FILE" ] || return 0
  read -r pid start <"$LAB_OWNER_FILE" 2>/dev/null || return 0
  [ -n "${pid:-}" ] || return 0
  if [ "$(_lab_proc_start "$pid")" = "${start:-x}" ]; then
    echo "$pid $start"
  fi
}

_lab_self() { echo "$$ $(_lab_proc_start $$)"; }

# Takes ownership if the lab is free (no live owner, or we own it). Returns 1 if busy.
_lab_try_claim() {
  local self owner
  self=$(_lab_self)
  (
    flock -w 5 9 || exit 1
    owner=$(_lab_live_owner)
    if [ -n "$owner" ] && [ "$owner" != "$self" ]; then
      exit 1
    fi
    echo "$self" >"$LAB_OWNER_FILE"
  ) 9>"$LAB_LOCK_FILE"
}

_lab_claim() {
  local deadline owner
  deadline=$(($(_lab_ms) + LAB_OWNER_WAIT * 1000))
  while ! _lab_try_claim; do
    if [ "$(_lab_ms)" -ge "$deadline" ]; then
      owner=$(_lab_live_owner)
      _lab_err "busy: owned by pid ${owner%% *} ($(tr '\0' ' ' <"/proc/${owner%% *}/cmdline" 2>/dev/null)) for more than ${LAB_OWNER_WAIT}s"
      return 1
    fi
    sleep 0.2
  done
}

# Returns 0 if this shell owns the lab or nobody alive does.
_lab_is_ours_or_free() {
  local owner
  owner=$(_lab_live_owner)
  [ -z "$owner" ] || [ "$owner" = "$(_lab_self)" ]
}

# lab_release: gives up ownership (lab_down does it unless --keep-owner); also drops
# the record of an owner that is no longer alive.
lab_release() {
  (
    flock -w 5 9 || exit 1
    if _lab_is_ours_or_free; then
      rm -f "$LAB_OWNER_FILE"
    fi
  ) 9>"$LAB_LOCK_FILE"
}

# ---------------------------------------------------------------------------
# Background processes, recorded by PID.

# lab_spawn NAME NS CMD...: starts CMD in netns NS (r1 or wgr-r1) in the background,
# stdin from /dev/null, stdout+stderr to $(lab_log NAME), PID in $LAB_DIR/pids/NAME.pid.
# lab_stop NAME or lab_down stops it (TERM, KILL after 3 s). For daemons under test.
lab_spawn() {
  if [ "$#" -lt 3 ]; then
    _lab_err "usage: lab_spawn NAME NS CMD..."
    return 2
  fi
  _lab_spawn "$1" "$(_lab_ns "$2")" "${@:3}"
}

lab_log() { echo "$LAB_DIR/logs/$1.log"; }

# lab_pid NAME: PID of a process started with lab_spawn.
lab_pid() { cat "$LAB_DIR/pids/$1.pid"; }

lab_stop() { _lab_kill_pidfile "$LAB_DIR/pids/$1.pid"; }

_lab_spawn() {
  local name=$1 ns=$2 pid
  shift 2
  mkdir -p "$LAB_DIR/pids" "$LAB_DIR/logs" || return 1
  ip netns exec "$ns" "$@" </dev/null >"$LAB_DIR/logs/$name.log" 2>&1 &
  pid=$!
  echo "$pid" >"$LAB_DIR/pids/$name.pid"
}

# _lab_kill_pidfile FILE: TERM, wait up to 3 s, then KILL the recorded PID.
_lab_kill_pidfile() {
  local f=$1 pid
  pid=$(cat "$f" 2>/dev/null) || pid=
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! lab_wait_for 3 _lab_pid_gone "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      lab_wait_for 2 _lab_pid_gone "$pid" || _lab_err "pid $pid ($f) did not exit"
    fi
  fi
  rm -f "$f"
}

# A zombie child (not yet reaped by this shell) counts as gone.
_lab_pid_gone() {
  local state
  [ -e "/proc/$1" ] || return 0
  state=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  state=${state##*) }
  [ "${state%% *}" = Z ]
}

# lab_capture_start NAME NS IFACE [FILTER...]: starts tcpdump (immediate mode, line
# buffered, numeric, epoch timestamps) in NS on IFACE; its text goes to
# $(lab_capture_file NAME). Returns once tcpdump is listening (bounded: 5 s).
lab_capture_start() {
  if [ "$#" -lt 3 ]; then
    _lab_err "usage: lab_capture_start NAME NS IFACE [FILTER...]"
    return 2
  fi
  local name=$1 ns iface=$3
  ns=$(_lab_ns "$2")
  shift 3
  _lab_spawn "tcpdump-$name" "$ns" tcpdump --immediate-mode -l -n -tt -i "$iface" "$@" || return 1
  if ! lab_wait_for 5 grep -q "listening on" "$(lab_capture_file "$name")"; then
    _lab_err "tcpdump $name on $ns/$iface did not start: $(cat "$(lab_capture_file "$name")")"
    return 1
  fi
}

lab_capture_file() { echo "$LAB_DIR/logs/tcpdump-$1.log"; }

# lab_capture_stop NAME: stops the capture and prints the packet lines it saw.
lab_capture_stop() {
  local name=$1
  # Let packets already on the wire reach tcpdump before it stops.
  sleep 0.2
  _lab_kill_pidfile "$LAB_DIR/pids/tcpdump-$name.pid"
  grep -E '^[0-9]+\.[0-9]+ ' "$(lab_capture_file "$name")" || true
}

# ---------------------------------------------------------------------------
# Build.

# _lab_ip NS: runs `ip -batch -` in NS with the batch read from stdin.
_lab_ip() {
  local ns=$1 out
  if ! out=$(ip -n "$ns" -batch - 2>&1); then
    _lab_err "ip batch in $ns failed: $out"
    return 1
  fi
}

_lab_sysctl() {
  local ns=$1 out
  shift
  if ! out=$(ip netns exec "$ns" sysctl -q -w "$@" 2>&1); then
    _lab_err "sysctl in $ns failed: $out"
    return 1
  fi
}

_lab_nft() {
  local ns=$1 out
  if ! out=$(ip netns exec "$ns" nft -f - 2>&1); then
    _lab_err "nft in $ns failed: $out"
    return 1
  fi
}

# nft table for each router: drop multicast ICMPv6 (MLD reports, router solicitations)
# leaving its WireGuard device (see traps).
_lab_nft_wg_quiet() {
  local ns=$1 wg=$2
  _lab_nft "$ns" <<EOF
table ip6 wgr_lab_wg {
  chain output {
    type filter hook output priority filter; policy accept;
    oifname "$wg" ip6 daddr ff00::/8 icmpv6 type { mld-listener-report, mld2-listener-report, mld-listener-done, nd-router-solicit } counter drop
  }
}
EOF
}

# _lab_wg_start NS IFACE: starts wireguard-go in the foreground (in the background of
# this shell) and waits for its UAPI socket and TUN device.
_lab_wg_start() {
  local ns=$1 ifc=$2
  if [ -S "$LAB_WG_SOCK_DIR/$ifc.sock" ] && wg show "$ifc" >/dev/null 2>&1; then
    _lab_err "$LAB_WG_SOCK_DIR/$ifc.sock is served by a process this lab does not know"
    return 1
  fi
  _lab_spawn "wireguard-go-$ifc" "$ns" env LOG_LEVEL=verbose wireguard-go -f "$ifc" || return 1
  if ! lab_wait_for 5 _lab_wg_ready "$ns" "$ifc" "$(cat "$LAB_DIR/pids/wireguard-go-$ifc.pid")" ||
    ! _lab_wg_ready "$ns" "$ifc"; then
    _lab_err "wireguard-go $ifc in $ns did not come up: $(tail -n 5 "$LAB_DIR/logs/wireguard-go-$ifc.log")"
    return 1
  fi
}

# _lab_wg_ready NS IFACE [PID]: wireguard-go serves IFACE in NS. With PID, also
# "succeeds" once PID has died, so that a wait on it ends early (caller re-checks).
_lab_wg_ready() {
  if [ -n "${3:-}" ] && _lab_pid_gone "$3"; then
    return 0
  fi
  [ -S "$LAB_WG_SOCK_DIR/$2.sock" ] && ip -n "$1" link show "$2" >/dev/null 2>&1 &&
    wg show "$2" >/dev/null 2>&1
}

_lab_keys() {
  local who
  mkdir -p "$LAB_DIR/keys" || return 1
  chmod 700 "$LAB_DIR/keys" || return 1
  for who in r1 r2; do
    (umask 077 && wg genkey >"$LAB_DIR/keys/$who.key") || return 1
    chmod 600 "$LAB_DIR/keys/$who.key" || return 1
    wg pubkey <"$LAB_DIR/keys/$who.key" >"$LAB_DIR/keys/$who.pub" || return 1
  done
}

_lab_build() {
  local ka=$1 ns
  mkdir -p "$LAB_DIR" || return 1
  chmod 700 "$LAB_DIR" || return 1
  echo "$ka" >"$LAB_DIR/keepalive" || return 1

  for ns in "${LAB_NETNS[@]}"; do
    ip netns add "$ns" || return 1
    # Addresses usable at once (no DAD); set before any link exists so links inherit.
    _lab_sysctl "$ns" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 || return 1
  done
  # wgr-nat is IPv4 only.
  _lab_sysctl wgr-nat net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.ip_forward=1 || return 1
  _lab_sysctl wgr-r2 net.ipv6.conf.all.forwarding=1 || return 1
  _lab_sysctl wgr-r1 net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 || return 1

  # Links. Each pair is created from one side straight into the other namespace.
  _lab_ip wgr-inet <<'EOF' || return 1
link set lo up
link add br0 address 02:77:72:00:00:01 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
link add r2 type veth peer name wan netns wgr-r2
link add nat type veth peer name wan netns wgr-nat
link set r2 master br0
link set nat master br0
link set r2 up
link set nat up
link set br0 up
addr add 198.51.100.1/24 dev br0
addr add 2001:db8:ffff::1/64 dev br0 nodad
route add 2001:db8:100::/48 via 2001:db8:ffff::2
EOF
  _lab_ip wgr-nat <<'EOF' || return 1
link set lo up
link add lan type veth peer name wan netns wgr-r1
link set wan up
link set lan up
addr add 198.51.100.3/24 dev wan
addr add 100.64.0.1/24 dev lan
EOF
  _lab_sysctl wgr-r1 net.ipv6.conf.wan.disable_ipv6=1 || return 1
  _lab_ip wgr-r1 <<'EOF' || return 1
link set lo up
link add lan type veth peer name eth0 netns wgr-lan
link set wan up
link set lan up
addr add 100.64.0.2/24 dev wan
route add default via 100.64.0.1
addr add 100.127.1.1/24 dev lan
addr add 2001:db8:100:1::1/64 dev lan nodad
EOF
  _lab_ip wgr-lan <<'EOF' || return 1
link set lo up
link set eth0 up
addr add 100.127.1.2/24 dev eth0
route add default via 100.127.1.1
addr add 2001:db8:100:1::100/64 dev eth0 nodad
route add ::/0 via 2001:db8:100:1::1
EOF
  _lab_ip wgr-r2 <<'EOF' || return 1
link set lo up
link set wan up
addr add 198.51.100.2/24 dev wan
addr add 2001:db8:ffff::2/64 dev wan nodad
route add default via 198.51.100.1
route add ::/0 via 2001:db8:ffff::1
EOF

  # NAT: the port range needs a transport protocol match (see traps).
  _lab_nft wgr-nat <<'EOF' || return 1
table ip wgr_lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" meta l4proto { tcp, udp } masquerade to :30000-30999 random
    oifname "wan" masquerade random
  }
}
EOF
  _lab_nft wgr-r1 <<'EOF' || return 1
table ip wgr_lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" ip saddr 100.127.1.0/24 masquerade
  }
}
EOF
  _lab_nft_wg_quiet wgr-r2 wg0 || return 1
  _lab_nft_wg_quiet wgr-r1 wg1 || return 1

  # WireGuard.
  _lab_keys || return 1
  _lab_wg_start wgr-r2 wg0 || return 1
  _lab_wg_start wgr-r1 wg1 || return 1
  local r1pub r2pub out
  r1pub=$(cat "$LAB_DIR/keys/r1.pub") || return 1
  r2pub=$(cat "$LAB_DIR/keys/r2.pub") || return 1
  # r2 learns r1's endpoint: no endpoint configured.
  if ! out=$(ip netns exec wgr-r2 wg set wg0 listen-port "$LAB_R2_PORT" \
    private-key "$LAB_DIR/keys/r2.key" \
    peer "$r1pub" allowed-ips "$LAB_R1_TUN6/128,2001:db8:100:1::/64" 2>&1); then
    _lab_err "wg set wg0: $out"
    return 1
  fi
  if ! out=$(ip netns exec wgr-r1 wg set wg1 private-key "$LAB_DIR/keys/r1.key" \
    peer "$r2pub" endpoint "$LAB_R2_WAN4:$LAB_R2_PORT" allowed-ips ::/0 \
    persistent-keepalive "$ka" 2>&1); then
    _lab_err "wg set wg1: $out"
    return 1
  fi
  _lab_ip wgr-r2 <<'EOF' || return 1
addr add 2001:db8:100::1/64 dev wg0 nodad
link set wg0 up
route add 2001:db8:100:1::/64 dev wg0
EOF
  _lab_ip wgr-r1 <<'EOF' || return 1
addr add 2001:db8:100::2/64 dev wg1 nodad
link set wg1 up
EOF
  # Source-specific default route preferred (as OpenWrt's netifd does); plain default
  # if the kernel lacks IPV6_SUBTREES.
  if ip -n wgr-r1 route add ::/0 from 2001:db8:100::/48 dev wg1 2>/dev/null; then
    echo source-specific >"$LAB_DIR/r1_default6"
  else
    ip -n wgr-r1 route add ::/0 dev wg1 || return 1
    echo plain >"$LAB_DIR/r1_default6"
  fi
}

# lab_up [KEEPALIVE]: (re)builds the lab. KEEPALIVE: r1's persistent_keepalive in
# seconds, "off" or 0 for none (default).
lab_up() {
  local ka=${1:-off} t0
  case "$ka" in
  off | 0) ka=off ;;
  *[!0-9]* | '')
    _lab_err "keepalive must be off or a number of seconds, got '$ka'"
    return 2
    ;;
  esac
  if [ "$(id -u)" != 0 ]; then
    _lab_err "must run as root"
    return 1
  fi
  t0=$(_lab_ms)
  _lab_claim || return 1
  _lab_teardown
  if ! _lab_build "$ka"; then
    _lab_err "up failed; tearing down"
    _lab_teardown
    return 1
  fi
  echo "lab: up in $(($(_lab_ms) - t0)) ms (r1 keepalive $ka)"
}

# Removes everything the lab made. Safe to call at any time, any number of times.
_lab_teardown() {
  local f ns ifc
  if [ -d "$LAB_DIR/pids" ]; then
    for f in "$LAB_DIR"/pids/*.pid; do
      [ -e "$f" ] || continue
      _lab_kill_pidfile "$f"
    done
  fi
  for ns in "${LAB_NETNS[@]}"; do
    if [ -e "/run/netns/$ns" ]; then
      ip netns delete "$ns" 2>/dev/null || _lab_err "could not delete netns $ns"
    fi
  done
  # Stale UAPI sockets (wireguard-go does not unlink them), only if nobody serves them.
  for ifc in "${LAB_WG_IFACES[@]}"; do
    if [ -S "$LAB_WG_SOCK_DIR/$ifc.sock" ] && ! wg show "$ifc" >/dev/null 2>&1; then
      rm -f "$LAB_WG_SOCK_DIR/$ifc.sock"
    fi
  done
  rm -rf "$LAB_DIR"
}

# lab_down [--keep-owner]: tears the lab down (idempotent) unless another live process
# owns it; releases ownership unless --keep-owner.
lab_down() {
  if ! _lab_is_ours_or_free; then
    _lab_err "not tearing down: owned by live pid $(_lab_live_owner | cut -d' ' -f1)"
    return 0
  fi
  _lab_teardown
  if [ "${1:-}" != --keep-owner ]; then
    lab_release
  fi
  return 0
}

# ---------------------------------------------------------------------------
# Events and queries.

# lab_r1_wan_addr: r1's current IPv4 WAN address.
lab_r1_wan_addr() {
  local a
  a=$(ip -n wgr-r1 -4 -o addr show dev wan 2>/dev/null | awk '{print $4; exit}')
  [ -n "$a" ] || { _lab_err "r1 has no WAN address"; return 1; }
  echo "${a%/*}"
}

# lab_nat_rebind: forgets every NAT mapping in wgr-nat; r1's next packet gets a new
# (random) outside port.
lab_nat_rebind() {
  local out
  if ! out=$(ip netns exec wgr-nat conntrack -F 2>&1); then
    _lab_err "conntrack -F in wgr-nat: $out"
    return 1
  fi
}

# lab_uplink_change [--raw]: moves r1's WAN address 100.64.0.2 <-> 100.64.0.3 (break
# before make), re-adds its default route and prints the new address. Unless --raw, it
# then re-applies r1's configured endpoint of r2 unchanged, which only clears
# wireguard-go's cached source address, so that wg1 sends from the new address like
# kernel WireGuard does (see the trap "wireguard-go keeps sending from a deleted
# address"). With --raw, wireguard-go stays stuck on the old address.
lab_uplink_change() {
  local cur new raw=0 ep
  if [ "${1:-}" = --raw ]; then raw=1; fi
  cur=$(lab_r1_wan_addr) || return 1
  if [ "$cur" = "$LAB_R1_WAN4_A" ]; then new=$LAB_R1_WAN4_B; else new=$LAB_R1_WAN4_A; fi
  _lab_ip wgr-r1 <<EOF || return 1
addr del $cur/24 dev wan
addr add $new/24 dev wan
route replace default via $LAB_NAT_IN4 dev wan
EOF
  if [ "$raw" = 0 ]; then
    ep=$(ip netns exec wgr-r1 wg show wg1 endpoints | awk -v k="$(lab_r2_pubkey)" '$1 == k { print $2 }')
    case "$ep" in
    '' | '(none)') ;;
    *) ip netns exec wgr-r1 wg set wg1 peer "$(lab_r2_pubkey)" endpoint "$ep" || return 1 ;;
    esac
  fi
  echo "$new"
}

# lab_nat_port_of_r1: the outside port wgr-nat currently maps r1's
# r1 -> 198.51.100.2:51820 flow to (from conntrack). Fails if there is no mapping.
lab_nat_port_of_r1() {
  local src port
  src=$(lab_r1_wan_addr) || return 1
  port=$(ip netns exec wgr-nat conntrack -L -p udp -s "$src" -d "$LAB_R2_WAN4" \
    --dport "$LAB_R2_PORT" 2>/dev/null |
    awk '{ n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^dport=/) { n++; if (n == 2) { sub(/^dport=/, "", $i); print $i; exit } } }')
  [ -n "$port" ] || { _lab_err "no NAT mapping for $src -> $LAB_R2_WAN4:$LAB_R2_PORT"; return 1; }
  echo "$port"
}

# lab_r2_endpoint: r1's endpoint as r2 (wg0) sees it: "ip:port" or "(none)".
lab_r2_endpoint() {
  local pub
  pub=$(cat "$LAB_DIR/keys/r1.pub") || return 1
  ip netns exec wgr-r2 wg show wg0 endpoints | awk -v k="$pub" '$1 == k { print $2 }'
}

# lab_r1_pubkey / lab_r2_pubkey: public keys generated at lab_up.
lab_r1_pubkey() { cat "$LAB_DIR/keys/r1.pub"; }
lab_r2_pubkey() { cat "$LAB_DIR/keys/r2.pub"; }

# lab_wg_transfer NS IFACE: "rx tx" bytes of the first peer.
lab_wg_transfer() {
  lab_exec "$1" wg show "$2" transfer | awk '{ print $2, $3; exit }'
}

lab_status() {
  local ns owner
  owner=$(_lab_live_owner)
  echo "owner: ${owner:-(none alive)}"
  for ns in "${LAB_NETNS[@]}"; do
    if [ -e "/run/netns/$ns" ]; then echo "netns $ns: present"; else echo "netns $ns: absent"; fi
  done
  if [ -d "$LAB_DIR/pids" ]; then
    local f pid
    for f in "$LAB_DIR"/pids/*.pid; do
      [ -e "$f" ] || continue
      pid=$(cat "$f")
      if kill -0 "$pid" 2>/dev/null; then echo "$(basename "$f" .pid): pid $pid running"; else echo "$(basename "$f" .pid): pid $pid DEAD"; fi
    done
  fi
  if [ -e /run/netns/wgr-r1 ]; then
    echo "r1 wan: $(lab_r1_wan_addr 2>/dev/null || echo none)"
    echo "nat port of r1: $(lab_nat_port_of_r1 2>/dev/null || echo none)"
    echo "r2 sees r1 at: $(lab_r2_endpoint 2>/dev/null || echo '?')"
    ip netns exec wgr-r2 wg show wg0 2>/dev/null || true
    ip netns exec wgr-r1 wg show wg1 2>/dev/null || true
  fi
}

_lab_main() {
  set -euo pipefail
  local cmd=${1:-}
  shift || true
  case "$cmd" in
  up) lab_up "$@" ;;
  down) lab_down "$@" ;;
  status) lab_status ;;
  nat-rebind) lab_nat_rebind && echo "lab: NAT mappings flushed" ;;
  uplink-change) lab_uplink_change "$@" ;;
  *)
    echo "usage: $0 up [KEEPALIVE] | down | status | nat-rebind | uplink-change [--raw]" >&2
    return 2
    ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _lab_main "$@"
fi
