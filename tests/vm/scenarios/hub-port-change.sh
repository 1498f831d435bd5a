#!/bin/sh
# hub-port-change: runs INSIDE the test VM (busybox sh, root, kernel WireGuard).
#
# Two network namespaces joined by a veth pair: r2 (hub, 198.51.100.2, wg0 on
# 51820, no endpoint for r1) and r1 (roaming peer, 198.51.100.9). r1 pings
# through the tunnel, so r2 learns r1's endpoint; then r1 changes its listen
# port, which to r2 is exactly what a NAT port change looks like.
#   part 1 (kernel): `wg show` on r2 follows r1 to the new port.
#   part 2 (agent):  `wgroam run` as hub in r2; `wgroam status --json` shows the
#                    peer's endpoint at the new port after another change.
# Prints PASS:/FAILED: lines; exits 0 only if every check passed.
set -u
# shellcheck source=tests/vm/lib.sh
. /etc/vm-lib.sh

R2_IP=198.51.100.2
R1_IP=198.51.100.9
R2_TUN=2001:db8:100::1
R1_TUN=2001:db8:100::2
r1() { ip netns exec r1 "$@"; }
r2() { ip netns exec r2 "$@"; }
ticks() { echo $((WAIT_S * 5)); } # polls of 0.2 s

# r2's view of r1's endpoint, from the kernel.
kernel_endpoint() { r2 wg show wg0 endpoints | awk -v k="$R1_PUB" '$1 == k { print $2 }'; }

# Pings r2 through the tunnel from r1 (a few tries; the first one also
# carries the handshake).
send() {
  n=0
  while [ "$n" -lt 3 ]; do
    r1 ping -c 1 -W 2 "$R2_TUN" >/dev/null 2>&1 && return 0
    n=$((n + 1))
  done
  return 1
}

# ---------------------------------------------------------------- setup ---
must ip netns add r1
must ip netns add r2
must ip link add wan netns r1 type veth peer name wan netns r2
must r1 ip link set lo up
must r2 ip link set lo up
must r1 ip addr add "$R1_IP/24" dev wan
must r2 ip addr add "$R2_IP/24" dev wan
must r1 ip link set wan up
must r2 ip link set wan up

umask 077
for n in r1 r2; do
  must wg genkey >"/tmp/$n.key"
  must wg pubkey <"/tmp/$n.key" >"/tmp/$n.pub"
done
R1_PUB=$(cat /tmp/r1.pub)
R2_PUB=$(cat /tmp/r2.pub)

# r2: the hub; knows r1's key but not where r1 is.
must r2 ip link add wg0 type wireguard
must r2 wg set wg0 listen-port 51820 private-key /tmp/r2.key \
  peer "$R1_PUB" allowed-ips "$R1_TUN/128,2001:db8:100:1::/64"
must r2 ip -6 addr add "$R2_TUN/64" dev wg0 nodad
must r2 ip link set wg0 up
# r1: the roaming router; knows the hub's endpoint.
must r1 ip link add wg0 type wireguard
must r1 wg set wg0 listen-port 40001 private-key /tmp/r1.key \
  peer "$R2_PUB" endpoint "$R2_IP:51820" allowed-ips 2001:db8:100::/48
must r1 ip -6 addr add "$R1_TUN/64" dev wg0 nodad
must r1 ip link set wg0 up

# ------------------------------------------------------- part 1: kernel ---
echo "--- part 1: kernel WireGuard follows a port change ($(uptime_s)s uptime)"
ep=$(kernel_endpoint)
if [ "$ep" = "(none)" ] || [ -z "$ep" ]; then
  pass "r2 starts without an endpoint for r1"
else
  fail "r2 has endpoint '$ep' for r1 before any traffic"
fi
if send; then pass "r1 -> r2 ping through the tunnel (handshake from port 40001)"; else fail "r1 -> r2 ping through the tunnel"; fi
ep=$(kernel_endpoint)
if [ "$ep" = "$R1_IP:40001" ]; then pass "r2 learned r1's endpoint $ep"; else fail "r2's endpoint for r1 is '$ep', expected $R1_IP:40001"; fi

must r1 wg set wg0 listen-port 40002
if send; then pass "r1 -> r2 ping after r1 moved to port 40002"; else fail "r1 -> r2 ping after r1 moved to port 40002"; fi
ep=$(kernel_endpoint)
if [ "$ep" = "$R1_IP:40002" ]; then pass "wg show on r2: r1 now at $ep"; else fail "wg show on r2: r1 at '$ep', expected $R1_IP:40002"; fi

# -------------------------------------------------------- part 2: agent ---
echo "--- part 2: wgroam (hub) reports the new endpoint ($(uptime_s)s uptime)"

STATE=/run/wgroam
# The endpoint `wgroam status --json` shows for r1 ("" if none): the peer
# object holding r1's public key, read without jq.
agent_endpoint() {
  status_json "$STATE" r2 | sed 's/},{/}\n{/g' | grep -F "\"public_key\":\"$R1_PUB\"" |
    sed -n 's/.*"endpoint":"\([^"]*\)".*/\1/p' | head -n 1
}
# A string field of wg0 in the status ("null" or "" if not a string).
agent_iface_field() {
  status_json "$STATE" r2 | sed -n "s/.*\"$1\":\\(\"[^\"]*\"\\|null\\).*/\\1/p" | tr -d '"'
}
# Polls agent_endpoint until it is $1 (bounded); prints the last value seen.
wait_agent_endpoint() {
  i=0
  while [ "$i" -lt "$(ticks)" ]; do
    seen=$(agent_endpoint)
    [ "$seen" = "$1" ] && break
    usleep 200000
    i=$((i + 1))
  done
  echo "$seen"
}

agent_part() {
  if ! version=$(wgroam --version 2>&1) || [ -z "$version" ]; then
    fail "agent: 'wgroam --version' failed (agent missing or too old): ${version:-no output}"
    return
  fi
  echo "agent: $version"
  # No uci tool in the VM: the hub follows the kernel only, stages nothing.
  cat >/tmp/wgroam.conf <<'EOF'
config agent 'agent'
	option role 'hub'
	option uci '0'

config interface 'wg0'
EOF
  agent_start r2 /tmp/wgroam.conf "$STATE" agent || failed=1

  # An agent started after the handshake takes the kernel's endpoint as r1's
  # only once the kernel authenticates traffic from it (issue 12: nothing
  # unconfirmed is believed or staged): r1 sends, then the agent shows it.
  send >/dev/null 2>&1 || true
  seen=$(wait_agent_endpoint "$R1_IP:40002")
  if [ "$seen" = "$R1_IP:40002" ]; then
    pass "agent: status --json shows r1 at $seen"
  else
    fail "agent: status --json shows r1 at '$seen', expected $R1_IP:40002 (no status or no peers: agent too old?)"
    echo "agent: status --json said:"
    r2 wgroam status --json --state-dir "$STATE" 2>&1 | head -c 2000
    echo
  fi
  backend=$(agent_iface_field backend)
  if [ "$backend" = kernel ]; then pass "agent: wg0 read through the kernel backend"; else fail "agent: wg0 backend is '$backend', expected kernel"; fi
  capture=$(agent_iface_field capture)
  capture_error=$(agent_iface_field capture_error)
  if [ -n "$capture" ] && [ "$capture" != null ]; then
    pass "agent: handshake capture active ($capture)"
  else
    fail "agent: no handshake capture on the kernel (capture '$capture', error '$capture_error')"
  fi

  must r1 wg set wg0 listen-port 40003
  t0=$(now_ms)
  if send; then pass "r1 -> r2 ping after r1 moved to port 40003"; else fail "r1 -> r2 ping after r1 moved to port 40003"; fi
  seen=$(wait_agent_endpoint "$R1_IP:40003")
  took=$(($(now_ms) - t0))
  if [ "$seen" = "$R1_IP:40003" ]; then
    pass "agent: status --json follows r1 to $seen (${took} ms after r1 sent)"
  else
    fail "agent: status --json shows r1 at '$seen' ${WAIT_S}s after the change, expected $R1_IP:40003"
  fi
  r2 wgroam status --state-dir "$STATE" | sed 's/^/  /'

  agent_stop agent
  echo "agent: log (last 30 lines):"
  tail -n 30 /tmp/agent.log | sed 's/^/  /'
}
agent_part
echo "--- done ($(uptime_s)s uptime)"

exit "$failed"
