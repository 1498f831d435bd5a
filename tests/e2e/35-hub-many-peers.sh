#!/usr/bin/env bash
# Issue 4/7 acceptance: the hub agent follows 51 roaming peers at once. r1 and 50
# more peers (tests/lab/many.sh: wgp0..wgp49, all behind the same NAT address, each
# with its own UDP port) are configured in r2's uci `network` as wireguard_wg0
# sections, named and anonymous (`@wireguard_wg0[n]`). Every peer sends; the agent
# shows every endpoint exactly as the NAT mapped it. A NAT rebind moves all of them;
# every peer sends again; every endpoint follows to its own new port, and uci holds
# the right staged endpoint_host/endpoint_port for every section (read back with the
# real uci tool).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/../lab/many.sh"
. "$here/agent.sh"
trap 'many_down; lab_down' EXIT

N=50
fail() { echo "FAIL: $*"; echo "--- agent log (tail)"; agent_hub_log | tail -n 20 || true; exit 1; }
t() { printf '%6d ms  %s\n' $(($(agent_ms) - T0)) "$*"; }

# section_of I: the uci reference of peer I's section. Every fifth peer has a named
# section, the others are anonymous; r1's named section 'r1' is @wireguard_wg0[0].
section_of() {
  if [ $(($1 % 5)) = 2 ]; then echo "peer$1"; else echo "@wireguard_wg0[$(($1 + 1))]"; fi
}

# expected: "KEY SECTION 198.51.100.3:PORT" for r1 and every peer, from the NAT's
# conntrack table (sorted by key). Fails if a mapping is missing.
expected() {
  local i port
  {
    port=$(lab_nat_port_of_r1) || return 1
    echo "$(lab_r1_pubkey) r1 $LAB_NAT_OUT4:$port"
    local -A ports=()
    while read -r i port; do ports[$i]=$port; done < <(many_nat_ports)
    for ((i = 0; i < N; i++)); do
      [ -n "${ports[$i]:-}" ] || { echo "no NAT mapping for wgp$i" >&2; return 1; }
      echo "$(many_pubkey "$i") $(section_of "$i") $LAB_NAT_OUT4:${ports[$i]}"
    done
  } | sort
}

# shown: the same lines as the agent reports them.
shown() {
  agent_hub_status | jq -r '.interfaces[] | select(.name == "wg0") | .peers[] |
    "\(.public_key) \(.section // "none") \(.endpoint // "none")"' | sort
}

all_shown() { [ "$(shown)" = "$(cat "$LAB_DIR/expected")" ]; }

# wait_all_shown TIMEOUT_S: until the agent shows exactly the expected endpoints.
wait_all_shown() {
  if ! lab_wait_for "$1" all_shown; then
    diff <(cat "$LAB_DIR/expected") <(shown) | head -n 20
    return 1
  fi
}

send_all() {
  local bad
  lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null || fail "r1's LAN client cannot reach $LAB_INET6"
  bad=$(many_send 3) || fail "peers whose ping through the tunnel failed: $bad"
}

lab_up
T0=$(agent_ms)
many_up "$N"
agent_hub_setup
{
  for ((i = 0; i < N; i++)); do
    echo
    s=$(section_of "$i")
    if [ "${s#@}" = "$s" ]; then echo "config wireguard_wg0 '$s'"; else echo "config wireguard_wg0"; fi
    echo "	option description 'roaming peer $i'"
    echo "	option public_key '$(many_pubkey "$i")'"
    echo "	list allowed_ips '$(many_addr6 "$i")/128'"
  done
} >>"$LAB_DIR/r2/etc/network"
cp "$LAB_DIR/r2/etc/network" "$LAB_DIR/r2/network.orig"
agent_hub_start
configured=$(agent_hub_status | jq '[.interfaces[0].peers[] | select(.section != null)] | length')
[ "$configured" = $((N + 1)) ] || fail "agent knows $configured peers with a uci section, expected $((N + 1))"
t "hub agent running (pid $(agent_hub_pid)), $configured peers from uci"

start=$(agent_ms)
send_all
t "r1 and $N peers sent through their tunnels ($(($(agent_ms) - start)) ms)"
expected >"$LAB_DIR/expected" || fail "NAT mappings incomplete"
hosts=$(awk '{ split($3, a, ":"); print a[1] }' "$LAB_DIR/expected" | sort -u)
[ "$hosts" = "$LAB_NAT_OUT4" ] || fail "peers do not all share the NAT address: $hosts"
wait_all_shown 3 || fail "agent does not show all $((N + 1)) endpoints 3 s after they sent"
t "agent shows all $((N + 1)) endpoints as the NAT mapped them ($(($(agent_ms) - start)) ms after the first send)"
cp "$LAB_DIR/expected" "$LAB_DIR/expected.before"

for _ in 1 2 3; do
  lab_nat_rebind
  start=$(agent_ms)
  send_all
  sent=$(agent_ms)
  expected >"$LAB_DIR/expected" || fail "NAT mappings incomplete after the rebind"
  moved=$(join <(awk '{print $1, $3}' "$LAB_DIR/expected.before") \
    <(awk '{print $1, $3}' "$LAB_DIR/expected") | awk '$2 != $3' | wc -l)
  # A rebind draws each port again from 1000: a few may come out the same.
  [ "$moved" -ge $((N - 5)) ] && break
  t "only $moved of $((N + 1)) NAT ports changed; rebinding again"
done
[ "$moved" -ge $((N - 5)) ] || fail "the NAT moved only $moved peers in 3 rebinds"
t "NAT rebind: $moved of $((N + 1)) peers got a new outside port"
distinct=$(awk '{print $3}' "$LAB_DIR/expected" | sort -u | wc -l)
[ "$distinct" = $((N + 1)) ] || fail "$distinct distinct endpoints for $((N + 1)) peers"
wait_all_shown 3 || fail "agent does not show all $((N + 1)) new endpoints 3 s after the peers sent"
now=$(agent_ms)
t "agent follows all $((N + 1)) peers, each to its own new port ($((now - start)) ms after the first peer sent, $((now - sent)) ms after the last ping returned)"
kernel_bad=$(comm -3 <(awk '{print $1, $3}' "$LAB_DIR/expected") \
  <(lab_exec r2 wg show wg0 endpoints | awk '{print $1, $2}' | sort) | wc -l)
[ "$kernel_bad" = 0 ] || fail "the kernel's endpoints differ from the NAT's for $kernel_bad lines"
why=$(agent_hub_status | jq -r '[.interfaces[0].peers[].last_change.why] | unique | join(",")')
t "last_change.why over all peers: $why"

# uci: staged endpoint of every section, through the real uci tool.
uci=$(agent_uci_bin)
want_uci() {
  awk '{ split($3, a, ":"); s = $2
         print "network." s ".endpoint_host=\x27" a[1] "\x27"
         print "network." s ".endpoint_port=\x27" a[2] "\x27" }' "$LAB_DIR/expected" | sort
}
have_uci() {
  "$uci" -c "$LAB_DIR/r2/etc" -t "$LAB_DIR/r2/save" show network | grep -E '\.endpoint_(host|port)=' | sort
}
uci_right() { [ "$(have_uci)" = "$(want_uci)" ]; }
if ! lab_wait_for 3 uci_right; then
  diff <(want_uci) <(have_uci) | head -n 20
  fail "uci staged endpoints differ from the peers' endpoints"
fi
t "uci show network: endpoint_host/endpoint_port staged right for all $((N + 1)) sections ($(want_uci | grep -c '@wireguard_wg0.*endpoint_port') of them anonymous)"
cmp -s "$LAB_DIR/r2/etc/network" "$LAB_DIR/r2/network.orig" || fail "network was written to 'flash' before the commit interval"
t "/etc/config/network untouched (staged in the save dir only)"
echo "PASS"
