#!/usr/bin/env bash
# Issue 5 acceptance, OpenWrt mode: the roam agent reads its hub peer from uci
# `network`, delegates the prefix by staging network.wg1.ip6prefix (and ip6assign
# on lan, which had none) with the real uci tool and `ubus call network reload`,
# withdraws it (option deleted + reload) when the tunnel is down past the grace
# period and restores it. The ubus stand-in checks the exact command lines; flash
# (the config file) is never written.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lab/lab.sh"
. "$here/agent.sh"
trap lab_down EXIT

reloads() { grep -c . "$LAB_DIR/r1/ubus.log" || true; }
reloads_are() { [ "$(reloads)" = "$1" ]; }

lab_up
T0=$(agent_ms)
roam_lab_prepare
agent_roam_setup_uci "option heartbeat_interval '1'" "option grace '2'"
cp "$LAB_DIR/r1/etc/network" "$LAB_DIR/r1/network.orig"
agent_roam_start_uci
lab_wait_for 5 roam_delegation_is delegated || fail "not delegated"
[ "$(r1_uci -q get network.wg1.ip6prefix)" = 2001:db8:100:1::/64 ] || fail "ip6prefix not staged"
[ "$(r1_uci -q get network.lan.ip6assign)" = 64 ] || fail "ip6assign not staged on lan"
lab_wait_for 2 reloads_are 1 || fail "expected 1 ubus call, got: $(cat "$LAB_DIR/r1/ubus.log")"
[ "$(cat "$LAB_DIR/r1/ubus.log")" = "ubus call network reload" ] || fail "unexpected ubus call: $(cat "$LAB_DIR/r1/ubus.log")"
t "delegated: staged $(r1_uci changes network | tr '\n' ' ')and called 'ubus call network reload'"
lab_exec lan ping -6 -c1 -W2 "$LAB_INET6" >/dev/null 2>&1 || true

nat_block_wireguard
lab_wait_for 12 roam_delegation_is withdrawn || fail "not withdrawn"
if r1_uci -q get network.wg1.ip6prefix >/dev/null; then fail "ip6prefix still set after withdrawal"; fi
lab_wait_for 2 reloads_are 2 || fail "expected 2 ubus calls, got $(reloads)"
t "tunnel down past grace: ip6prefix removed (staged), network reloaded"
[ "$(r1_uci -q get network.lan.ip6assign)" = 64 ] || fail "withdrawal touched lan.ip6assign"

nat_unblock_wireguard
lab_wait_for 15 roam_delegation_is delegated || fail "not restored"
[ "$(r1_uci -q get network.wg1.ip6prefix)" = 2001:db8:100:1::/64 ] || fail "ip6prefix not restored"
lab_wait_for 2 reloads_are 3 || fail "expected 3 ubus calls, got $(reloads)"
t "tunnel back: ip6prefix staged again, network reloaded"
sort -u "$LAB_DIR/r1/ubus.log" | grep -qvx "ubus call network reload" && fail "other ubus calls: $(sort -u "$LAB_DIR/r1/ubus.log")"
cmp -s "$LAB_DIR/r1/etc/network" "$LAB_DIR/r1/network.orig" || fail "/etc/config/network was written (flash)"
t "exactly 3 'ubus call network reload', config file untouched"
echo "PASS"
