#!/usr/bin/env bash
# The lab demo (README command 1): installs what is needed, builds, brings up the
# network-namespace lab (r2 hub, r1 roaming behind a port-changing NAT, a LAN
# client, an "internet" host), runs the wgroam hub on r2 and the roam agent on r1,
# and prints a timeline of
# what happened and what the agent saw and did. Everything it creates is removed
# at the end. Debian 12, as root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

echo "== preparing (packages, uci tool, static build)"
bash scripts/install-deps.sh >/dev/null
WGROAM_UCI_BIN=$(bash tests/tools/build-uci.sh | tail -n 1)
export WGROAM_UCI_BIN
cargo build --release --quiet --target x86_64-unknown-linux-musl
export WGROAM_BIN="$root/target/x86_64-unknown-linux-musl/release/wgroam"

. tests/lab/lab.sh
. tests/e2e/agent.sh
trap lab_down EXIT

T0=$(agent_ms)
say() { printf '\n%7.3f s  %s\n' "$(echo "($(agent_ms) - $T0) / 1000" | bc -l)" "$*"; }
agent_says() {
  # New agent log lines since the last call, indented, per agent.
  local who f n seen
  for who in hub:agent-r2 roam:agent-r1; do
    f=$LAB_DIR/logs/${who#*:}.log
    [ -f "$f" ] || continue
    n=$(wc -l <"$f")
    seen=SEEN_${who%%:*}
    sed -n "$((${!seen:-0} + 1)),${n}p" "$f" | sed "s/^/             ${who%%:*}: /"
    printf -v "$seen" %s "$n"
  done
}
show() {
  local s
  s=$(agent_hub_status | jq -r --arg k "$(lab_r1_pubkey)" \
    '.interfaces[0].peers[] | select(.public_key == $k) | "endpoint \(.endpoint // "none") (why: \(.last_change.why // "-")), uci \(.uci_endpoint // "none")"')
  echo "             status: $s"
}

say "lab: inet (198.51.100.1, 2001:db8:ffff::1) - r2 hub (198.51.100.2:51820) - NAT (198.51.100.3, ports 30000-30999) - r1 - LAN client"
lab_up >/dev/null
agent_hub_setup
agent_hub_start
say "hub agent running on r2 (wgroam $("$WGROAM_BIN" --version | cut -d' ' -f2), pid $(agent_hub_pid))"
roam_lab_prepare
capture_initiations_start # r1's first handshake, for the replay scene below
agent_roam_setup
agent_roam_start
say "roam agent running on r1: split-tunnel routes, prefix to the LAN by router advertisements"
lab_wait_for 10 has_lan_slaac || true
TARGET=$(lan_slaac_addr)
TARGET=${TARGET:-$LAB_LAN6}
agent_says
echo "             LAN client configured $TARGET from r1's RA"

say "LAN client pings the internet over IPv6 (through the tunnel) and IPv4 (through the NAT)"
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" | grep -E 'bytes from' | sed 's/^/             /'
lab_exec lan ping -4 -c1 -W2 "$LAB_INET4" | grep -E 'bytes from' | sed 's/^/             /'
capture_initiations_stop "$LAB_DIR/genuine.hex"
sleep 0.6
agent_says
show

say "r1 moves to another hotspot: its WAN address changes, and with it the NAT mapping"
start=$(agent_ms)
lab_uplink_change --raw >/dev/null
until ping_ok inet "$TARGET"; do
  [ $(($(agent_ms) - start)) -lt 10000 ] || break
done
echo "             inbound IPv6 to the LAN client works again after $(($(agent_ms) - start)) ms"
sleep 0.6
agent_says
show

say "the hotel NAT forgets its mapping (conntrack flush); r1 sends again from a new port"
lab_nat_rebind
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null
new=$(lab_nat_port_of_r1)
lab_wait_for 3 agent_hub_endpoint_is "$LAB_NAT_OUT4:$new" || true
agent_says
show

say "r2's WireGuard restarts with the old endpoint from config while the NAT moves again"
old=$new
lab_r2_wg_stop
sleep 0.6
lab_nat_rebind
lab_r2_wg_start "$LAB_NAT_OUT4:$old"
sleep 0.6
agent_says
say "r1's next packet (under its old session) reaches r2 from a new port"
start=$(agent_ms)
lab_exec lan ping -6 -c1 -W0.1 "$LAB_INET6" >/dev/null 2>&1 || true
until ping_ok inet "$TARGET"; do
  [ $(($(agent_ms) - start)) -lt 5000 ] || break
done
echo "             inbound IPv6 to the LAN client works again after $(($(agent_ms) - start)) ms"
agent_says
show

say "someone replays r1's handshake and sends forged ones from elsewhere (2000 packets)"
lab_exec inet python3 tests/e2e/spoof.py "$(lab_r2_pubkey)" "$LAB_DIR/genuine.hex" "$LAB_R2_WAN4" "$LAB_R2_PORT" 2000 >/dev/null
sleep 0.6
agent_says
show
echo "             ignored: $(agent_hub_status | jq -c '.interfaces[0].ignored')"

say "agent stops (SIGTERM): staged endpoint committed to /etc/config/network once"
kill -TERM "$(agent_hub_pid)"
lab_wait_for 5 _lab_pid_gone "$(agent_hub_pid)" || true
agent_says
grep -E "endpoint_(host|port)" "$LAB_DIR/r2/etc/network" | sed 's/^/             network: /'
say "done; the lab is removed"
