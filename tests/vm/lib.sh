# Shared helpers for VM scenarios: sourced INSIDE the test VM (busybox sh) as
# /etc/vm-lib.sh by scenarios that want it (`. /etc/vm-lib.sh`).
#
# topo_up builds the lab's topology from namespaces and veth pairs, with kernel
# WireGuard on both routers and the lab's addressing (tests/lab/README.md),
# except that there is no bridge (no bridge module in the VM): the internet
# host and the NAT each have their own link to r2.
#
#   inet  (internet host) eth0 2001:db8:ffff::1/64, linked to r2's inet
#   r2    (hub)  inet 2001:db8:ffff::2/64; wan 198.51.100.2/24, linked to the
#         NAT's wan; wg0 port 51820, 2001:db8:100::1/64, 2001:db8:100:1::/64 -> wg0
#   nat   wan 198.51.100.3/24; lan 100.64.0.1/24, linked to r1's wan; nft
#         masquerade to ports 30000-30999, random
#   r1    (roam) wan 100.64.0.2/24 (or .3), default via 100.64.0.1;
#         wg1 2001:db8:100::2/64; lan 2001:db8:100:1::1/64, linked to the client
#   lan   (client) eth0 2001:db8:100:1::100/64, default via r1
#
# r1 has no persistent keepalive. Scenarios using this need "# vm-needs: nft".
# shellcheck shell=sh disable=SC2034 # the addresses are for the scenarios

INET6=2001:db8:ffff::1
R2_INET6=2001:db8:ffff::2
R2_WAN4=198.51.100.2
R2_PORT=51820
R2_TUN=2001:db8:100::1
NAT_OUT4=198.51.100.3
NAT_IN4=100.64.0.1
R1_WAN4_A=100.64.0.2
R1_WAN4_B=100.64.0.3
R1_TUN=2001:db8:100::2
R1_LAN6=2001:db8:100:1::1
LAN6=2001:db8:100:1::100
PREFIX=2001:db8:100:1::/64
WAIT_S=${WAIT_S:-5} # default bound for polls

failed=0
pass() { echo "PASS: $*"; }
fail() {
  echo "FAILED: $*"
  failed=1
}
must() {
  "$@" || {
    echo "FAILED: setup step failed: $*"
    exit 1
  }
}
# ns NS CMD...: runs CMD in namespace NS. A function: backgrounded it would be
# a subshell, so background jobs use /usr/bin/ip netns exec directly ($! is
# then the command itself).
ns() {
  ns_=$1
  shift
  /usr/bin/ip netns exec "$ns_" "$@"
}
uptime_s() {
  read -r u_ _ </proc/uptime
  echo "$u_"
}
# Milliseconds of uptime (10 ms resolution).
now_ms() {
  read -r u_ _ </proc/uptime
  echo $((${u_%.*} * 1000 + 1${u_#*.}0 - 1000))
}
step() { echo "--- $* ($(uptime_s)s uptime)"; }

# wait_for SECONDS CMD...: polls CMD every 50 ms until it succeeds; fails after
# SECONDS.
wait_for() {
  end_=$(($(now_ms) + $1 * 1000))
  shift
  while :; do
    "$@" && return 0
    [ "$(now_ms)" -lt "$end_" ] || return 1
    usleep 50000
  done
}

# sysctl_ns NS KEY=VALUE...: sysctls inside NS (/proc/sys/net is per
# namespace), in one process.
sysctl_ns() {
  ns_=$1
  shift
  cmd_=
  for kv_ in "$@"; do
    cmd_="$cmd_ echo '${kv_#*=}' >/proc/sys/$(echo "${kv_%%=*}" | tr . /) &&"
  done
  ns "$ns_" sh -c "$cmd_ :"
}

# ip_batch NS: `ip -batch -` in NS (one process for many commands: under TCG
# every process start costs tens of milliseconds).
ip_batch() { ip -n "$1" -batch -; }

# keys: r1/r2 key pairs in /tmp; sets R1_PUB and R2_PUB.
keys() {
  umask 077
  for n_ in r1 r2; do
    wg genkey >"/tmp/$n_.key" || return 1
    wg pubkey <"/tmp/$n_.key" >"/tmp/$n_.pub" || return 1
  done
  umask 022
  R1_PUB=$(cat /tmp/r1.pub)
  R2_PUB=$(cat /tmp/r2.pub)
}

# r2_wg_up [ENDPOINT]: creates r2's wg0 the way netifd sets it up from uci:
# key, port, the peer r1 (with ENDPOINT if given), address, route to r1's LAN.
r2_wg_up() {
  ns r2 ip link add wg0 type wireguard || return 1
  ns r2 wg set wg0 listen-port "$R2_PORT" private-key /tmp/r2.key \
    peer "$R1_PUB" allowed-ips "$R1_TUN/128,$PREFIX" ${1:+endpoint "$1"} || return 1
  ip_batch r2 <<EOF
addr add $R2_TUN/64 dev wg0 nodad
link set wg0 up
route add $PREFIX dev wg0
EOF
}

# topo_up R1_LISTEN_PORT: the namespaces, links, NAT and both WireGuard
# interfaces (r1 knows the hub's endpoint, r2 does not know r1's). r1 gets no
# IPv6 default route: the scenario adds one, or the roam agent does.
topo_up() {
  for ns_ in inet r2 nat r1 lan; do
    ip netns add "$ns_" || return 1
  done
  # Addresses usable at once (no duplicate address detection); set before any
  # link exists so that links inherit it.
  dad_=net.ipv6.conf.default.accept_dad=0
  sysctl_ns inet "$dad_" || return 1
  sysctl_ns r2 "$dad_" net.ipv6.conf.all.forwarding=1 || return 1
  sysctl_ns nat "$dad_" net.ipv4.ip_forward=1 || return 1
  sysctl_ns r1 "$dad_" net.ipv6.conf.all.forwarding=1 || return 1
  sysctl_ns lan "$dad_" || return 1
  ip -batch - <<'EOF' || return 1
link add eth0 netns inet type veth peer name inet netns r2
link add wan netns r2 type veth peer name wan netns nat
link add lan netns nat type veth peer name wan netns r1
link add lan netns r1 type veth peer name eth0 netns lan
EOF
  ip_batch inet <<EOF || return 1
link set lo up
addr add $INET6/64 dev eth0 nodad
link set eth0 up
route add 2001:db8:100::/48 via $R2_INET6
EOF
  ip_batch r2 <<EOF || return 1
link set lo up
addr add $R2_INET6/64 dev inet nodad
addr add $R2_WAN4/24 dev wan
link set inet up
link set wan up
EOF
  ip_batch nat <<EOF || return 1
link set lo up
addr add $NAT_OUT4/24 dev wan
addr add $NAT_IN4/24 dev lan
link set wan up
link set lan up
EOF
  # The port range needs a transport protocol match; ICMP gets a plain rule.
  ns nat nft -f - <<'EOF' || return 1
table ip nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" meta l4proto { tcp, udp } masquerade to :30000-30999 random
    oifname "wan" masquerade random
  }
}
EOF
  ip_batch r1 <<EOF || return 1
link set lo up
addr add $R1_WAN4_A/24 dev wan
link set wan up
route add default via $NAT_IN4
addr add $R1_LAN6/64 dev lan nodad
link set lan up
EOF
  ip_batch lan <<EOF || return 1
link set lo up
addr add $LAN6/64 dev eth0 nodad
link set eth0 up
route add ::/0 via $R1_LAN6
EOF

  keys || return 1
  r2_wg_up '' || return 1
  ns r1 ip link add wg1 type wireguard || return 1
  ns r1 wg set wg1 listen-port "$1" private-key /tmp/r1.key \
    peer "$R2_PUB" endpoint "$R2_WAN4:$R2_PORT" allowed-ips ::/0 || return 1
  ip_batch r1 <<EOF
addr add $R1_TUN/64 dev wg1 nodad
link set wg1 up
EOF
}

# r1_wan_addr: r1's current IPv4 WAN address.
r1_wan_addr() { ns r1 ip -4 -o addr show dev wan | awk '{ sub(/\/.*/, "", $4); print $4; exit }'; }

# r2_endpoint: r1's endpoint as r2's kernel sees it ("(none)" if none).
r2_endpoint() { ns r2 wg show wg0 endpoints | awk -v k="$R1_PUB" '$1 == k { print $2 }'; }

# nat_port SRC SPORT: the outside port the NAT maps SRC:SPORT -> r2:51820 to
# (from /proc/net/nf_conntrack; SPORT empty: any). Empty if there is none.
nat_port() {
  ns nat cat /proc/net/nf_conntrack 2>/dev/null | awk -v src="$1" -v sport="$2" \
    -v dst="$R2_WAN4" -v dport="$R2_PORT" '
    $3 == "udp" {
      n = 0
      for (i = 4; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "src") n++
        if (n == 1) o[kv[1]] = kv[2]
        if (n == 2 && kv[1] == "dport") r = kv[2]
      }
      if (o["src"] == src && o["dst"] == dst && o["dport"] == dport && (sport == "" || o["sport"] == sport)) {
        print r
        exit
      }
    }'
}

# status_json DIR NS: the agent's `status --json` on one line, whitespace
# between JSON tokens removed.
status_json() {
  ns "$2" wgroam status --json --state-dir "$1" 2>/dev/null | tr -d '\t\n' |
    sed -e 's/^ *//' -e 's/" *: */":/g' -e 's/ *, *\([{"]\)/,\1/g' -e 's/\([{[]\) */\1/g' -e 's/ *\([]}]\)/\1/g'
}
# json_value NAME: the (last) scalar value of field NAME in a one-line JSON
# document on stdin, quotes removed.
json_value() { sed -n "s/.*\"$1\":\\(\"[^\"]*\"\\|[^,}]*\\).*/\\1/p" | tr -d '"'; }

# hub_conf FILE: the hub agent's config for r2 (no uci in the VM; capture on wan).
hub_conf() {
  cat >"$1" <<EOF
config agent 'agent'
	option role 'hub'
	option uci '0'
	option state_file '/tmp/wgroam-r2-state.json'

config interface 'wg0'
	option capture_device 'wan'
EOF
}

# agent_start NS CONFIG STATE_DIR NAME: starts `wgroam run` in NS (log in
# /tmp/NAME.log, PID in /tmp/NAME.pid) and waits for its status file.
agent_start() {
  /usr/bin/ip netns exec "$1" wgroam run --config "$2" --stderr --state-dir "$3" \
    >"/tmp/$4.log" 2>&1 &
  echo "$!" >"/tmp/$4.pid"
  if ! wait_for "$WAIT_S" test -s "$3/status.json"; then
    echo "FAILED: $4 wrote no status within ${WAIT_S}s; log:"
    sed 's/^/  /' "/tmp/$4.log"
    return 1
  fi
}

# signal_and_wait PID SIG SECONDS: sends SIG and waits (bounded) for PID to exit;
# if it is still running after SECONDS, SIGKILLs it and returns 1.
signal_and_wait() {
  kill -"$2" "$1"
  sw_=0
  while kill -0 "$1" 2>/dev/null && [ "$sw_" -lt $(($3 * 20)) ]; do
    usleep 50000
    sw_=$((sw_ + 1))
  done
  if kill -0 "$1" 2>/dev/null; then
    kill -KILL "$1"
    return 1
  fi
}

# agent_stop NAME: SIGTERM; checks that the agent was still running and exits 0.
agent_stop() {
  pid_=$(cat "/tmp/$1.pid")
  if ! kill -0 "$pid_" 2>/dev/null; then
    wait "$pid_"
    fail "$1: exited early (status $?)"
    return
  fi
  if ! signal_and_wait "$pid_" TERM "$WAIT_S"; then
    fail "$1: still running ${WAIT_S}s after SIGTERM"
    return
  fi
  wait "$pid_"
  rc_=$?
  if [ "$rc_" -eq 0 ]; then pass "$1: ran throughout, exited 0 on SIGTERM"; else fail "$1: exited $rc_ on SIGTERM"; fi
}

# agent_log NAME [LINES]: the agent's log, indented.
agent_log() {
  echo "$1: log (last ${2:-30} lines):"
  tail -n "${2:-30}" "/tmp/$1.log" | sed 's/^/  /'
}

# file_has FILE TEXT: FILE has a line containing TEXT. Shell builtins only: no
# process start, so it can be polled every 10 ms even under TCG.
file_has() {
  [ -f "$1" ] || return 1
  while IFS= read -r l_; do
    case $l_ in *"$2"*) return 0 ;; esac
  done <"$1"
  return 1
}

# wait_file_has SECONDS FILE TEXT: polls file_has every 10 ms, bounded.
wait_file_has() {
  end_=$(($(now_ms) + $1 * 1000))
  until file_has "$2" "$3"; do
    [ "$(now_ms)" -lt "$end_" ] || return 1
    usleep 10000
  done
}

# inbound_ms NS ADDR BOUND_S T0_MS: pings ADDR from NS every 50 ms until the
# first reply, for at most BOUND_S seconds; prints the ms from T0_MS until that
# reply was seen (polled every 10 ms, an upper bound), nothing if none came.
# /tmp/inbound.info says when the pings started and which one was answered
# first, with its round-trip time: with the 50 ms interval that dates the
# reply more precisely than the polling does.
inbound_ms() {
  rm -f /tmp/inbound.out
  start_=$(now_ms)
  /usr/bin/ip netns exec "$1" ping -6 -i 0.05 -w "$3" "$2" >/tmp/inbound.out 2>&1 &
  ping_pid_=$!
  got_=
  while :; do
    if file_has /tmp/inbound.out 'seq='; then
      got_=$(now_ms)
      break
    fi
    kill -0 "$ping_pid_" 2>/dev/null || break
    usleep 10000
  done
  kill "$ping_pid_" 2>/dev/null
  wait "$ping_pid_" 2>/dev/null
  first_=$(grep -m 1 'seq=' /tmp/inbound.out | sed -n 's/.*seq=\([0-9]*\).*time=\([0-9]*\).*/\1 \2/p')
  if [ -n "$first_" ]; then
    # shellcheck disable=SC2086 # two numbers
    set -- "$1" "$2" "$3" "$4" $first_
    echo "pings from +$((start_ - $4)) ms, first answered seq=$5 (sent ~+$((start_ - $4 + $5 * 50)) ms," \
      "round trip $6 ms): reply at ~+$((start_ - $4 + $5 * 50 + $6)) ms, seen at +$((got_ - $4)) ms" >/tmp/inbound.info
  else
    echo "pings from +$((start_ - $4)) ms, no reply" >/tmp/inbound.info
  fi
  [ -n "$got_" ] && echo $((got_ - $4))
}

# A ping stream measures an outage by ping's own clock, free of the tens to
# hundreds of milliseconds a process start costs under TCG: pings leave every
# 50 ms, so if seq J was answered before an event and seq M is the first one
# answered after a gap, the path was back at most (M - J) * 50 ms + M's round
# trip after the event.
# stream_start NS ADDR SECONDS: pings ADDR from NS every 50 ms in the
# background (/tmp/stream.out), for at most SECONDS.
stream_start() {
  rm -f /tmp/stream.out
  /usr/bin/ip netns exec "$1" ping -6 -i 0.05 -w "$3" "$2" >/tmp/stream.out 2>&1 &
  stream_pid=$!
}
stream_stop() {
  kill "$stream_pid" 2>/dev/null
  wait "$stream_pid" 2>/dev/null
}
# stream_scan J: sets stream_top (the highest answered seq, -1 if none) and,
# if a seq after J was answered after an unanswered one, stream_back
# ("M RTT_MS"; else empty). Shell builtins only.
stream_scan() {
  stream_top=-1
  stream_back=
  prev_=-1
  [ -f /tmp/stream.out ] || return 0
  while IFS= read -r l_; do
    case $l_ in *seq=*time=*) ;; *) continue ;; esac
    q_=${l_#*seq=}
    q_=${q_%% *}
    [ "$q_" -gt "$stream_top" ] && stream_top=$q_
    if [ -z "$stream_back" ] && [ "$prev_" -ge "$1" ] && [ "$q_" -gt $((prev_ + 1)) ]; then
      r_=${l_#*time=}
      r_=${r_%% *}
      stream_back="$q_ ${r_%.*}"
    fi
    [ "$q_" -gt "$prev_" ] && prev_=$q_
  done </tmp/stream.out
}
stream_answered() {
  stream_scan 0
  [ "$stream_top" -ge "$1" ]
}
stream_is_back() {
  stream_scan "$1"
  [ -n "$stream_back" ]
}

# ping_once NS ADDR: one echo, 1 s to answer.
ping_once() { ns "$1" ping -6 -c 1 -W 1 "$2" >/dev/null 2>&1; }
