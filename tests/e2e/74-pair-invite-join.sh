#!/usr/bin/env bash
# Issue 14: pairing. A fresh hub with a pool and a fresh travel router: `wgroam
# invite` on r2, `wgroam join` on r1 (real WireGuard, real uci, the agents). The
# join configures r1, the hub adds the peer live with one commit; the tunnel is up
# and the prefix delegated when join returns. Then every refusal case leaves the
# config files of both routers byte-identical, and a second router joins with its
# own invite, gets a different prefix, and r1's session is not re-handshaked.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
. "$here/pair.sh"
trap 'pair_r3_down; lab_down' EXIT

lab_up
T0=$(agent_ms)
roam_lab_prepare
pair_hub_fresh
pair_r1_fresh
cp -a "$LAB_DIR/r1/etc" "$LAB_DIR/r1-fresh-etc"
MODEL=0
if pair_model r1; then MODEL=1; fi
agent_hub_start
t "fresh hub (pool $PAIR_POOL, no peer) and fresh travel router"
grep -q "pair: wg0 listening for redeems on UDP 51821" "$LAB_DIR/logs/agent-r2.log" || fail "no redeem listener"

# --- refusals first (nothing may be written on either side) -----------------
pair_snapshot "$LAB_DIR/r1" before
pair_snapshot "$LAB_DIR/r2" before
refused() { # NAME EXPECTED_TEXT JOIN_ARGS...
  local name=$1 want=$2 out rc=0
  shift 2
  out=$(pair_join "$@" 2>&1) || rc=$?
  [ "$rc" != 0 ] || fail "$name: join succeeded"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "$name: not one line: $out"
  case "$out" in *"$want"*) ;; *) fail "$name: expected '$want', got: $out" ;; esac
  pair_same "$LAB_DIR/r1" before || fail "$name: r1 config changed"
  pair_same "$LAB_DIR/r2" before || fail "$name: r2 config changed"
  [ -z "$(r2_uci changes network)" ] || fail "$name: r2 has staged changes"
  [ -z "$(r1_uci changes)" ] || fail "$name: r1 has staged changes"
  [ "$(ip netns exec wgr-r2 wg show wg0 peers | wc -l)" = 0 ] || fail "$name: hub got a peer"
  t "refused ($name): $out"
}
tok=$(pair_invite --name altered --ttl 1h | head -n1)
# Altered: one character changed (checksum) — refused before anything is sent.
alt=${tok:0:20}$([ "${tok:20:1}" = A ] && echo B || echo A)${tok:21}
refused altered "checksum mismatch" "$alt"
# Altered with a valid checksum: another secret the hub never issued.
forged=$(python3 - "$tok" <<'PY'
import base64, sys, zlib
t = sys.argv[1]
b = bytearray(base64.urlsafe_b64decode(t[8:] + "=" * (-len(t[8:]) % 4)))
b[40] ^= 1
body = bytes(b[:-4])
b = body + zlib.crc32(body).to_bytes(4, "big")
print("wgroam1:" + base64.urlsafe_b64encode(b).decode().rstrip("="))
PY
)
refused "altered (valid checksum)" "does not know this invite" "$forged"
# Wrong hub: the same invite with another hub key.
wronghub=$(python3 - "$tok" <<'PY'
import base64, sys, zlib
t = sys.argv[1]
b = bytearray(base64.urlsafe_b64decode(t[8:] + "=" * (-len(t[8:]) % 4)))
b[5] ^= 0x55
body = bytes(b[:-4])
b = body + zlib.crc32(body).to_bytes(4, "big")
print("wgroam1:" + base64.urlsafe_b64encode(b).decode().rstrip("="))
PY
)
refused "wrong hub" "does not hold the key" "$wronghub"
pair_invite --revoke altered >/dev/null || fail "revoke"
refused revoked "revoked" "$tok"
tok=$(pair_invite --name short --ttl 1s | head -n1)
sleep 1.2
refused expired "expired" "$tok"
for why in Revoked Expired Unknown; do
  grep -q "pair: redeem of invite .* refused: $why" "$LAB_DIR/logs/agent-r2.log" || fail "$why attempt not logged"
done
grep -q "pair: redeem from .* refused: does not decrypt" "$LAB_DIR/logs/agent-r2.log" || fail "wrong-hub attempt not logged"
# Hub unreachable: its agent is stopped.
tok=$(pair_invite --name later | head -n1)
kill "$(agent_hub_pid)"
lab_wait_for 5 sh -c "! kill -0 $(agent_hub_pid) 2>/dev/null" || fail "hub agent did not stop"
refused "hub unreachable" "no answer from the hub" "$tok"
agent_hub_start
pair_invite --list | grep -q "^later  wg0  pending" || fail "list: $(pair_invite --list)"
[ "$(pair_invite --list --json | jq -r '.[] | select(.name == "altered") | .state')" = revoked ] ||
  fail "list --json: $(pair_invite --list --json)"

# --- join ---------------------------------------------------------------------
t0=$(agent_ms)
out=$(pair_join "$tok" 2>&1) || fail "join failed: $out; ubus calls: $(tr '\n' ';' <"$LAB_DIR/r1/ubus.log"); wg1: $(ip netns exec wgr-r1 wg show wg1 2>&1 | tr '\n' ' ')"
t "join returned after $(($(agent_ms) - t0)) ms: $(echo "$out" | tr '\n' '|')"
echo "$out" | grep -q "prefix 2001:db8:100:1::/64 delegated to lan" || fail "summary: $out"
# Hub: one committed peer section with the tunnel /128 and the prefix, peer live.
sec=wgroam_later
[ "$(r2_uci get network.$sec.allowed_ips)" = "2001:db8:100::2/128 2001:db8:100:1::/64" ] || fail "hub uci: $(r2_uci show network.$sec)"
grep -q "config wireguard_wg0 'wgroam_later'" "$LAB_DIR/r2/etc/network" || fail "peer section not committed"
# What the hub agent stages afterwards is only the endpoint it learned (RAM).
if r2_uci changes network | grep -v "^network\.wgroam_later\.endpoint_\(host\|port\)="; then
  fail "hub left other staged changes"
fi
r1pub=$(ip netns exec wgr-r1 wg show wg1 public-key)
ip netns exec wgr-r2 wg show wg0 allowed-ips | grep -q "^$r1pub" || fail "peer not live on the hub"
# The private key stayed on r1: it is in r1's uci only, and nowhere on the hub.
r1key=$(r1_uci get network.wg1.private_key)
[ "$(printf '%s\n' "$r1key" | wg pubkey)" = "$r1pub" ] || fail "r1 key mismatch"
if grep -rqF "$r1key" "$LAB_DIR/r2" "$LAB_DIR/logs"; then fail "r1's private key found on the hub side"; fi
# r1: exactly the sections join owns.
[ "$(r1_uci get network.wg1_hub.allowed_ips)" = "::/0" ] || fail "r1 peer allowed_ips"
[ "$(r1_uci get firewall.wg1_zone.input)" = REJECT ] || fail "r1 zone"
[ "$(r1_uci get firewall.wg1_fwd.src)" = lan ] || fail "r1 forwarding"
[ "$(r1_uci get wgroam.wg1.prefix)" = 2001:db8:100:1::/64 ] || fail "r1 wgroam prefix"
# join committed everything; what may be staged afterwards is the agent's own
# delegation (RAM), never one of join's options.
if r1_uci changes | grep -v "^network\.wg1\.ip6prefix=\|^network\.lan\.ip6assign="; then
  fail "r1 left staged changes"
fi
grep -q "config interface 'wg1'" "$LAB_DIR/r1/etc/wgroam" || fail "wgroam not committed"
if [ "$MODEL" = 1 ]; then
  # The LAN client: an address in the allocated prefix from r1's RAs within 10 s of
  # the join starting, and the internet host over IPv6 through the tunnel.
  left=$((10000 - ($(agent_ms) - t0)))
  [ "$left" -gt 0 ] || left=1
  lab_wait_for "$(((left + 999) / 1000))" has_lan_slaac || fail "LAN client got no address in 2001:db8:100:1::/64 within 10 s"
  ADDR=$(lan_slaac_addr)
  lab_wait_for 3 ping_ok lan "$LAB_INET6" || fail "LAN client $ADDR does not reach $LAB_INET6"
  t "LAN client has $ADDR $(($(agent_ms) - t0)) ms after join started, reaches $LAB_INET6 over IPv6"
else
  t "no netifd model in this tree: the LAN client's address is not checked"
fi
# IPv6 through the tunnel from the delegated prefix's router address, IPv4 local.
lab_wait_for 10 ip netns exec wgr-r1 ping -6 -c1 -W1 -I 2001:db8:100::2 "$LAB_INET6" >/dev/null 2>&1 ||
  fail "r1 does not reach the internet host over IPv6 through the tunnel"
ip netns exec wgr-lan ping -4 -c1 -W2 "$LAB_INET4" >/dev/null || fail "LAN IPv4 broke"
t "tunnel up, r1 reaches $LAB_INET6 over IPv6; LAN IPv4 stays local"
# --- a second router: reuse refused, its own invite works, r1 undisturbed -----
pair_r3_up || fail "r3 setup"
if [ "$MODEL" = 1 ]; then pair_model r3 || fail "r3 model"; fi
pair_snapshot "$LAB_DIR/r3" before
pair_snapshot "$LAB_DIR/r2" before
out=$(pair_join_in wgr-r3 "$LAB_DIR/r3" "$tok" --interface wg3 2>&1) && fail "reuse accepted"
case "$out" in *"already used"*) ;; *) fail "reuse: $out" ;; esac
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "reuse: not one line"
pair_same "$LAB_DIR/r3" before || fail "reuse changed r3's config"
pair_same "$LAB_DIR/r2" before || fail "reuse changed the hub's config"
t "refused (reused, from a second router): $out"

# A join whose tunnel never comes up (r3's WireGuard packets dropped) is undone:
# one line, r3's files byte-identical, its device without peer or address.
ip netns exec wgr-r3 nft -f - <<'EOF2'
table inet wgr_block {
  chain output {
    type filter hook output priority 0; policy accept;
    udp dport 51820 drop
  }
}
EOF2
tokb=$(pair_invite --name blocked | head -n1)
out=$(pair_join_in wgr-r3 "$LAB_DIR/r3" "$tokb" --interface wg3 --timeout 4 2>&1) && fail "blocked join succeeded"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || fail "blocked join: not one line: $out"
case "$out" in *"no handshake with the hub"*"configuration restored"*) ;; *) fail "blocked join: $out" ;; esac
pair_same "$LAB_DIR/r3" before || fail "failed join left r3's config changed"
[ -z "$(ip netns exec wgr-r3 wg show wg3 peers)" ] || fail "failed join left a peer on wg3"
[ -z "$(ip -n wgr-r3 -6 addr show dev wg3 scope global)" ] || fail "failed join left an address on wg3"
[ -z "$("$(agent_uci_bin)" -c "$LAB_DIR/r3/etc" -t "$LAB_DIR/r3/save" changes)" ] || fail "failed join left staged changes"
if [ -f "$LAB_DIR/pids/agent-r3.pid" ] && kill -0 "$(cat "$LAB_DIR/pids/agent-r3.pid")" 2>/dev/null; then
  fail "failed join left the agent running"
fi
ip netns exec wgr-r3 nft delete table inet wgr_block
t "refused (tunnel never up): $out"

hs() { ip netns exec wgr-r2 wg show wg0 latest-handshakes | awk -v k="$r1pub" '$1 == k { print $2 }'; }
hs1=$(hs)
ip netns exec wgr-r1 ping -6 -i 0.2 -W1 -I 2001:db8:100::2 "$LAB_INET6" >"$LAB_DIR/r1-ping.log" 2>&1 &
pinger=$!
sleep 1
tok3=$(pair_invite --name second | head -n1)
# This one reads the invite from stdin.
out=$(echo "$tok3" | pair_join_in wgr-r3 "$LAB_DIR/r3" - --interface wg3) || fail "second join failed: $out"
# :2 went to the failed join above (the hub keeps that peer): r3 gets :3.
echo "$out" | grep -q "prefix 2001:db8:100:3::/64 delegated" || fail "second prefix: $out"
t "second router joined: $(echo "$out" | tr '\n' '|')"
r3_uci() { "$(agent_uci_bin)" -c "$LAB_DIR/r3/etc" -t "$LAB_DIR/r3/save" "$@"; }
[ "$(r3_uci get wgroam.agent.role)" = roam ] || fail "r3: the package's agent section got no role"
! r3_uci -q get wgroam.wg0 >/dev/null || fail "r3: the package's empty wg0 placeholder is still there"
lab_wait_for 10 ip netns exec wgr-r3 ping -6 -c1 -W1 -I 2001:db8:100::4 "$LAB_INET6" >/dev/null 2>&1 ||
  fail "r3 does not reach the internet host over IPv6: $(ip netns exec wgr-r3 ping -6 -c2 -W1 -I 2001:db8:100::4 "$LAB_INET6" 2>&1 | tail -n 2; ip -n wgr-inet -6 route get 2001:db8:100::4; ip netns exec wgr-r2 ping -6 -c1 -W1 2001:db8:100::4 2>&1 | tail -n 2; ip -n wgr-r3 -6 route; ip -n wgr-r3 -6 addr show dev wg3; ip netns exec wgr-r3 wg show wg3; ip netns exec wgr-r2 wg show wg0; tail -n 20 "$LAB_DIR/logs/agent-r3.log")"
sleep 1
kill -INT "$pinger"
wait "$pinger" || true
loss=$(sed -n 's/.* \([0-9.]*\)% packet loss.*/\1/p' "$LAB_DIR/r1-ping.log")
[ "$loss" = 0 ] || fail "r1 lost packets while r3 joined: $(tail -n 3 "$LAB_DIR/r1-ping.log")"
[ "$(hs)" = "$hs1" ] || fail "r1 re-handshaked while r3 joined ($hs1 -> $(hs))"
t "r1's session untouched while r3 joined: same handshake ($hs1), $(grep -c 'bytes from' "$LAB_DIR/r1-ping.log") echoes, 0% loss"
echo PASS
