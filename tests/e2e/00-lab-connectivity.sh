#!/usr/bin/env bash
# 00: the lab is real. Builds the lab (twice: a second lab_up must replace the first),
# then proves with counters and captures that
#   - nothing enters the tunnel by itself at link-up (MLD into wg1 is dropped),
#   - the LAN client's IPv6 to the internet host crosses the WireGuard tunnel (seen on
#     r2's wg0, r2's transfer counter grows) and r2 learns r1's NATed endpoint,
#   - the LAN client's IPv4 reaches the internet host outside the tunnel, from the NAT's
#     outside address 198.51.100.3 (split tunnel),
#   - a NAT rebind (conntrack flush) plus traffic from r1 moves r2's view of r1 to a new
#     port in 30000-30999 (WireGuard's own roaming), and so does an uplink change,
#   - lab_up's keepalive argument reaches r1 (r2 learns r1 without traffic),
#   - lab_down leaves no namespace, process, socket or file, also after an lab_up that
#     failed half-way.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lab/lab.sh
. "$here/../lab/lab.sh"

if [ "$(id -u)" != 0 ]; then
  echo "skip: needs root (network namespaces, nftables)"
  exit 77
fi
for c in ip nft conntrack wireguard-go wg tcpdump ping flock timeout; do
  if ! command -v "$c" >/dev/null 2>&1; then
    echo "skip: $c not installed (scripts/install-deps.sh)"
    exit 77
  fi
done

now_ms() { echo $(($(date +%s%N) / 1000000)); }
T0=$(now_ms)
timeline=()
mark() {
  local t=$(($(now_ms) - T0))
  timeline+=("$(printf '%7d ms  %s' "$t" "$*")")
  echo "[$t ms] $*"
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
shim_dir=
cleanup() {
  local rc=$?
  lab_down
  if [ -n "$shim_dir" ]; then rm -rf "$shim_dir"; fi
  echo "timeline:"
  printf '%s\n' "${timeline[@]}"
  exit "$rc"
}
trap cleanup EXIT

ping6_lan() { lab_exec lan ping -6 -n -c1 -W1 "$LAB_INET6"; }
port_of() { echo "${1##*:}"; }
in_nat_range() { [ "$1" -ge "$LAB_NAT_PORT_MIN" ] && [ "$1" -le "$LAB_NAT_PORT_MAX" ]; }
r2_rx() { lab_wg_transfer r2 wg0 | cut -d' ' -f1; }

# Asserts that nothing of the lab is left (we still own it: no other lab can appear).
assert_nothing_left() {
  local what=$1 pid ns
  # Only the lab's own names: other tests may use wgr- namespaces of their own.
  for ns in "${LAB_NETNS[@]}"; do
    if ip netns list | grep -q "^$ns\b" || [ -e "/run/netns/$ns" ]; then
      fail "$what: netns $ns left"
    fi
  done
  [ ! -e "$LAB_DIR" ] || fail "$what: $LAB_DIR left"
  for pid in "${@:2}"; do
    _lab_pid_gone "$pid" || fail "$what: pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) still running"
  done
  for pid in $(pgrep -f '(^|/)wireguard-go -f wg[01]$' || true); do
    _lab_pid_gone "$pid" || fail "$what: lab wireguard-go pid $pid still running"
  done
  [ ! -e /run/wireguard/wg0.sock ] || fail "$what: /run/wireguard/wg0.sock left"
  [ ! -e /run/wireguard/wg1.sock ] || fail "$what: /run/wireguard/wg1.sock left"
}

# --- up (twice) -------------------------------------------------------------------
lab_up >/dev/null
mark "lab up (1st)"
t=$(now_ms)
lab_up
up_ms=$(($(now_ms) - t))
mark "lab up again (replaces the first) in ${up_ms} ms"
[ "$up_ms" -lt 10000 ] || fail "lab_up took ${up_ms} ms (target < 5000)"
[ "$(stat -c %a "$LAB_DIR/keys/r1.key")" = 600 ] || fail "r1 private key is not mode 600"
[ "$(stat -c %a "$LAB_DIR/keys/r2.key")" = 600 ] || fail "r2 private key is not mode 600"
[ "$(lab_r2_endpoint)" = "(none)" ] || fail "r2 knows r1's endpoint before any traffic: $(lab_r2_endpoint)"
[ "$(lab_exec r1 wg show wg1 persistent-keepalive | cut -f2)" = off ] ||
  fail "r1 keepalive is not off by default"

# --- quiet link-up ---------------------------------------------------------------------
# wireguard-go's TUN sends MLD reports at link-up; the lab drops them so no handshake
# happens by itself. Proof: the drop rule counted packets, and no handshake after 1.5 s.
lab_wait_for 5 sh -c "ip netns exec wgr-r1 nft list chain ip6 wgr_lab_wg output | grep -Eq 'counter packets [1-9]'" ||
  fail "no MLD packet was dropped on r1's wg1 (rule not hit?)"
sleep 1.5
[ "$(lab_exec r1 wg show wg1 latest-handshakes | cut -f2)" = 0 ] ||
  fail "r1 handshook without any traffic (link-up noise entered the tunnel)"
mark "link-up noise dropped (MLD counter > 0), no handshake by itself"

# --- IPv6 through the tunnel -----------------------------------------------------------
rx0=$(r2_rx)
lab_capture_start v6wg r2 wg0 icmp6
lab_wait_for 10 ping6_lan || fail "LAN client cannot ping $LAB_INET6"
mark "LAN ping -6 $LAB_INET6 answered"
cap=$(lab_capture_stop v6wg)
echo "$cap" | grep -q "IP6 $LAB_LAN6 > $LAB_INET6: ICMP6, echo request" ||
  fail "echo request not seen on r2's wg0; capture: $cap"
echo "$cap" | grep -q "IP6 $LAB_INET6 > $LAB_LAN6: ICMP6, echo reply" ||
  fail "echo reply not seen on r2's wg0; capture: $cap"
rx1=$(r2_rx)
[ "$rx1" -gt "$rx0" ] || fail "r2's wg0 received no bytes ($rx0 -> $rx1)"
mark "echo request/reply seen on r2 wg0; r2 rx bytes $rx0 -> $rx1"

ep=$(lab_r2_endpoint)
port=$(port_of "$ep")
[ "${ep%:*}" = "$LAB_NAT_OUT4" ] || fail "r2 sees r1 at $ep, not behind $LAB_NAT_OUT4"
in_nat_range "$port" || fail "r2 sees r1 at port $port, outside $LAB_NAT_PORT_MIN-$LAB_NAT_PORT_MAX"
[ "$(lab_nat_port_of_r1)" = "$port" ] ||
  fail "NAT maps r1 to port $(lab_nat_port_of_r1), r2 sees $port"
mark "r2 learned r1's endpoint $ep (= NAT mapping)"

# --- IPv4 outside the tunnel (split tunnel) --------------------------------------------
lab_capture_start v4inet inet br0 icmp
lab_exec lan ping -4 -n -c1 -W2 "$LAB_INET4" >/dev/null || fail "LAN client cannot ping $LAB_INET4"
cap=$(lab_capture_stop v4inet)
echo "$cap" | grep -q "IP $LAB_NAT_OUT4 > $LAB_INET4: ICMP echo request" ||
  fail "IPv4 echo request did not arrive from $LAB_NAT_OUT4; capture: $cap"
if echo "$cap" | grep -Eq '100\.(64|127)\.'; then
  fail "inside addresses leaked to the internet: $cap"
fi
mark "LAN ping -4 $LAB_INET4 arrived from NAT $LAB_NAT_OUT4"

# --- NAT rebind: WireGuard roaming -----------------------------------------------------
old=$port
new=$old
# A random port in a 1000-port range repeats with probability 1/1000: retry.
for attempt in 1 2 3 4 5; do
  lab_nat_rebind
  lab_wait_for 10 ping6_lan || fail "no IPv6 after NAT rebind"
  if lab_wait_for 5 sh -c "[ \"\$(ip netns exec wgr-r2 wg show wg0 endpoints | cut -f2)\" != '$LAB_NAT_OUT4:$old' ]"; then
    new=$(port_of "$(lab_r2_endpoint)")
    break
  fi
  [ "$(lab_nat_port_of_r1)" = "$old" ] || fail "NAT moved r1 to $(lab_nat_port_of_r1) but r2 still sees $old"
  echo "rebind attempt $attempt drew the same port $old again; retrying"
done
[ "$new" != "$old" ] || fail "r2's endpoint for r1 never left port $old"
in_nat_range "$new" || fail "new port $new outside $LAB_NAT_PORT_MIN-$LAB_NAT_PORT_MAX"
[ "$(lab_nat_port_of_r1)" = "$new" ] || fail "NAT maps r1 to $(lab_nat_port_of_r1), r2 sees $new"
mark "NAT rebind: r2 now sees r1 at $LAB_NAT_OUT4:$new (was :$old)"

# --- uplink change --------------------------------------------------------------------
addr=$(lab_uplink_change)
[ "$addr" = "$LAB_R1_WAN4_B" ] || fail "uplink change gave $addr, expected $LAB_R1_WAN4_B"
lab_exec r1 ip -4 route show default | grep -q "via $LAB_NAT_IN4" || fail "r1 lost its default route"
lab_wait_for 10 ping6_lan || fail "no IPv6 after uplink change"
up_port=$(lab_nat_port_of_r1) || fail "no NAT mapping from r1's new address $addr"
lab_wait_for 5 sh -c "[ \"\$(ip netns exec wgr-r2 wg show wg0 endpoints | cut -f2)\" = '$LAB_NAT_OUT4:$up_port' ]" ||
  fail "r2 sees r1 at $(lab_r2_endpoint), NAT maps $addr to $up_port"
[ "$up_port" != "$new" ] || fail "uplink change kept port $new (old mapping still alive: must differ)"
mark "uplink change: r1 WAN $addr, r2 now sees r1 at $LAB_NAT_OUT4:$up_port"
addr=$(lab_uplink_change)
[ "$addr" = "$LAB_R1_WAN4_A" ] || fail "second uplink change gave $addr, expected $LAB_R1_WAN4_A"
lab_wait_for 10 ping6_lan || fail "no IPv6 after second uplink change"
mark "uplink change back: r1 WAN $addr, r2 sees r1 at $(lab_r2_endpoint)"

# --- down ---------------------------------------------------------------------------------
pids=()
for f in "$LAB_DIR"/pids/*.pid; do pids+=("$(cat "$f")"); done
[ "${#pids[@]}" -ge 2 ] || fail "expected at least 2 recorded PIDs, got ${#pids[@]}"
lab_down --keep-owner
assert_nothing_left "after lab_down" "${pids[@]}"
lab_down --keep-owner
mark "lab down: no lab netns (${LAB_NETNS[*]}), no wireguard-go (pids ${pids[*]}), no socket, no $LAB_DIR"

# --- keepalive parameter --------------------------------------------------------------
lab_up 1 >/dev/null
[ "$(lab_exec r1 wg show wg1 persistent-keepalive | cut -f2)" = 1 ] || fail "lab_up 1: r1 keepalive not 1"
lab_wait_for 5 sh -c "ip netns exec wgr-r2 wg show wg0 endpoints | grep -q '$LAB_NAT_OUT4:'" ||
  fail "lab_up 1: r2 did not learn r1's endpoint from keepalives alone"
mark "lab_up 1: r1 keepalive 1 s, r2 learned r1 at $(lab_r2_endpoint) without traffic"
lab_down --keep-owner
assert_nothing_left "after the keepalive lab"

# --- a half-failed up cleans up after itself --------------------------------------------
shim_dir=$(mktemp -d)
cat >"$shim_dir/wireguard-go" <<'EOF'
#!/bin/sh
# Test shim: wg0 starts for real, wg1 fails.
case "$2" in wg1) echo "shim: refusing wg1" >&2; exit 1 ;; esac
exec /usr/bin/wireguard-go "$@"
EOF
chmod +x "$shim_dir/wireguard-go"
if PATH="$shim_dir:$PATH" lab_up >/dev/null 2>&1; then
  fail "lab_up succeeded although wireguard-go for wg1 failed"
fi
assert_nothing_left "after a failed lab_up"
mark "lab_up failing at wg1 left nothing behind"
lab_release
echo "PASS"
