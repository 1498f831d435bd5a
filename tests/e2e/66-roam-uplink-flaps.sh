#!/usr/bin/env bash
# Issue 7: roam-side flaps. 100 cycles of r1's uplink going down and coming back up
# (as on a hotspot that drops the station): the WAN link goes down, comes back up
# and gets the other of two addresses, so every cycle is also a new NAT mapping; the
# default route is re-added as netifd does. The roam agent (r1) and the hub agent
# (r2) run; nobody signals them, the roam agent sees the change through rtnetlink.
# Every cycle: inbound IPv6 from the internet host to the LAN client comes back
# within 10 s. Over the run: the roam agent's routes (proto 119), r1's IPv6 rules
# and IPv4 routes are the same at the end as at the start; its RSS stays flat
# (within 5 % between cycle 10 and the last); it logs no error and never exits.
# Prints the recovery times (median, p90, max).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

CYCLES=${FLAP_CYCLES:-100}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$(lab_pid agent-r1)/status"; }
ours() { ip -n wgr-r1 -6 route show proto 119 | sort; }
rules6() { ip -n wgr-r1 -6 rule show | sort; }
routes4() { ip -n wgr-r1 -4 route show | sort; }

carrier() { ip -n wgr-r1 -o link show wan | grep -q 'state UP'; }
# uplink_flap: WAN down, a moment without it, back up on the other address.
uplink_flap() {
  local cur new
  cur=$(lab_r1_wan_addr) || return 1
  if [ "$cur" = "$LAB_R1_WAN4_A" ]; then new=$LAB_R1_WAN4_B; else new=$LAB_R1_WAN4_A; fi
  ip -n wgr-r1 link set wan down || return 1
  sleep 0.2
  # Back up, then, once there is carrier, what netifd does after DHCP: the new
  # lease, the default route.
  ip -n wgr-r1 link set wan up || return 1
  lab_wait_for 3 carrier || return 1
  # (The old lease goes first: deleting a primary address takes its secondaries.)
  ip -n wgr-r1 addr del "$cur/24" dev wan &&
    ip -n wgr-r1 addr add "$new/24" dev wan &&
    ip -n wgr-r1 route replace default via "$LAB_NAT_IN4" dev wan
}

roam_lab_start_both
addr=$ADDR
routes_start=$(ours)
rules_start=$(rules6)
v4_start=$(routes4)
[ -n "$routes_start" ] || fail "the roam agent installed no routes"
pid=$(lab_pid agent-r1)
t "hub and roam agents up; inet reaches the LAN client $addr; $CYCLES uplink down/up cycles"

times=()
rss10=
for i in $(seq 1 "$CYCLES"); do
  start=$(agent_ms)
  uplink_flap || fail "cycle $i: cannot flap r1's uplink"
  until ping_ok inet "$addr"; do
    [ $(($(agent_ms) - start)) -lt 10000 ] || fail "cycle $i: no inbound IPv6 10 s after the uplink came back"
  done
  times+=($(($(agent_ms) - start)))
  kill -0 "$pid" 2>/dev/null || fail "cycle $i: the roam agent exited"
  if [ "$i" = 10 ]; then
    rss10=$(rss_kb)
    t "cycle 10: roam agent RSS ${rss10} kB"
  elif [ $((i % 25)) = 0 ]; then
    t "cycle $i: r1 WAN $(lab_r1_wan_addr), NAT :$(lab_nat_port_of_r1), last recovery ${times[-1]} ms, RSS $(rss_kb) kB"
  fi
done

# Recovery includes the 200 ms without a link.
read -r median p90 max < <(printf '%s\n' "${times[@]}" | sort -n |
  awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)], v[NR] }')
t "inbound IPv6 back after the link came up: median ${median} ms, p90 ${p90} ms, max ${max} ms (incl. 200 ms down)"

[ "$(ours)" = "$routes_start" ] || fail "agent routes changed: start [$routes_start] end [$(ours)]"
[ "$(rules6)" = "$rules_start" ] || fail "IPv6 rules changed: start [$rules_start] end [$(rules6)]"
v4_now=$(routes4)
# The only IPv4 difference allowed is the WAN address the last flap left.
if [ "$(lab_r1_wan_addr)" != "$LAB_R1_WAN4_A" ]; then
  v4_now=$(echo "$v4_now" | sed "s/$LAB_R1_WAN4_B/$LAB_R1_WAN4_A/g" | sort)
fi
[ "$v4_now" = "$v4_start" ] || fail "IPv4 routes changed: start [$v4_start] end [$(routes4)]"
t "routes (proto 119: $(echo "$routes_start" | grep -c .)), IPv6 rules and IPv4 routes as at the start"

rss_end=$(rss_kb)
t "cycle $CYCLES: roam agent RSS ${rss_end} kB (cycle 10: ${rss10:-?} kB)"
if [ -n "$rss10" ]; then
  diff=$((rss_end > rss10 ? rss_end - rss10 : rss10 - rss_end))
  [ $((diff * 100)) -le $((rss10 * 5)) ] || fail "RSS changed by ${diff} kB (> 5 % of ${rss10} kB)"
fi
reactions=$(agent_roam_status | jq '.interfaces[0].reactions')
t "roam agent: $reactions uplink reactions for $CYCLES flaps"
[ "$reactions" -ge "$CYCLES" ] || fail "only $reactions uplink reactions for $CYCLES flaps"
for f in agent-r1 agent-r2; do
  if grep -q 'wgroam\[error\]' "$LAB_DIR/logs/$f.log"; then
    grep 'wgroam\[error\]' "$LAB_DIR/logs/$f.log" | head -n 5
    fail "$f logged errors"
  fi
done
roam_delegation_is delegated || fail "delegation is $(agent_roam_status | jq -r '.interfaces[0].delegation.state') at the end"
echo "PASS"
