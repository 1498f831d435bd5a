#!/usr/bin/env bash
# Issue 15, pairing in luci-app-wgroam and the `wgroam` ubus object, against
# the REAL wgroam binary and the REAL rpcd plugin (openwrt/files/wgroam.rpcd):
#
#  1. A hub in a scratch directory: its own network namespace (not the lab)
#     with a wireguard-go device (`wgroam invite` reads the hub's public key
#     and listen port from WireGuard), a hub config with a pool, state dir in
#     a temp dir.
#  2. The plugin's pairing methods as rpcd calls them (`call METHOD`, JSON on
#     stdin): invite -> {token, name, expires}; invites equals
#     `wgroam invite --list --json` (wrapped as {"invites": [...]}); revoke ->
#     the CLI shows it revoked; bad arguments (a name with a space or a
#     leading '-', a bad ttl, no endpoint, no token, a damaged token, an
#     unknown invite) give one-line {"error", "exit"} answers and write no
#     invite; the token never appears on a command line the plugin runs.
#  3. The "Invite a travel router" view in headless chromium (stand-in LuCI
#     runtime + rpcd/ACL stand-in running the real plugin): the token shown
#     is a real one (`wgroam invite --list` shows the invite pending; the
#     token carries this hub's WireGuard key), the QR code drawn is the
#     token's, the Revoke button revokes it (the CLI says so).
#     Screenshot target/screenshots/invite.png.
#  4. The "Join a hub" view: a damaged token gives wgroam join's own one-line
#     error on the page (nothing of this machine is configured: the token is
#     refused before anything else).
#
# Needs root, wireguard-go, node, Debian's chromium, tests/luci/node_modules.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/agent.sh"

fail() {
  echo "FAIL: $*"
  exit 1
}
for tool in node busybox jq wireguard-go wg ip; do
  command -v "$tool" >/dev/null || { echo "81-luci-pairing: $tool missing; run scripts/install-deps.sh"; exit 1; }
done
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || { echo "81-luci-pairing: chromium missing; run scripts/install-deps.sh"; exit 1; }
[ -f "$root/tests/luci/node_modules/uqr/dist/index.cjs" ] ||
  { echo "81-luci-pairing: tests/luci/node_modules missing; run scripts/install-deps.sh (npm ci)"; exit 1; }

bin=$(agent_bin)
plugin=$root/openwrt/files/wgroam.rpcd
shots=$root/target/screenshots
mkdir -p "$shots"
ns=wgr-luci81 dev=wgl81
tmp=$(mktemp -d)
wgpid=
cleanup() {
  [ -z "$wgpid" ] || kill "$wgpid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -f "/var/run/wireguard/$dev.sock"
  rm -rf "$tmp"
}
trap cleanup EXIT
step() { printf '\n=== 81-luci-pairing: %s (%ss)\n' "$*" "$SECONDS"; }

step "a hub in a scratch namespace and directory"
ip netns del "$ns" 2>/dev/null || true
ip netns add "$ns"
ip -n "$ns" link set lo up
WG_PROCESS_FOREGROUND=1 ip netns exec "$ns" wireguard-go "$dev" >"$tmp/wireguard-go.log" 2>&1 &
wgpid=$!
for _ in $(seq 50); do [ -S "/var/run/wireguard/$dev.sock" ] && break; sleep 0.1; done
[ -S "/var/run/wireguard/$dev.sock" ] || fail "wireguard-go did not start: $(cat "$tmp/wireguard-go.log")"
(umask 077 && wg genkey >"$tmp/hub.key")
ip netns exec "$ns" wg set "$dev" private-key "$tmp/hub.key" listen-port 51999
hub_pub=$(wg pubkey <"$tmp/hub.key")
mkdir -p "$tmp/run"
cat >"$tmp/wgroam.conf" <<CONF
config agent 'agent'
	option role 'hub'
	option state_dir '$tmp/run'
	option state_file '$tmp/state.json'

config interface '$dev'
	option backend 'userspace'
	option pool '2001:db8:100::/48'
CONF
# The plugin runs this wrapper, which records every command line it gets.
cat >"$tmp/wgroam" <<WRAP
#!/bin/sh
printf '%s\n' "\$*" >>"$tmp/argv"
exec "$bin" "\$@"
WRAP
chmod +x "$tmp/wgroam"
export WGROAM_BIN=$tmp/wgroam WGROAM_CONFIG=$tmp/wgroam.conf WGROAM_STATE_DIR=$tmp/run
call() { printf '%s' "$2" | ip netns exec "$ns" busybox sh "$plugin" call "$1"; }
cli_list() { "$bin" invite --list --json --config "$tmp/wgroam.conf"; }
one_error() { # one_error JSON CODE PATTERN: a one-line error, that exit status, naming PATTERN
  jq -e --argjson c "$2" --arg p "$3" '(.error | type == "string" and (contains("\n") | not) and test($p)) and .exit == $c and (keys | length == 2)' <<<"$1" >/dev/null
}

step "the plugin's pairing methods against the real binary"
methods=$(busybox sh "$plugin" list | jq -r 'keys | join(" ")')
[ "$methods" = "invite invites join revoke status" ] || fail "plugin list: $methods"
t0=$(date +%s)
r=$(call invite '{"name":"kitchen","ttl":"2h","endpoint":"hub.example.org:51820"}')
echo "invite: $(jq -c '.token |= .[0:16] + "…"' <<<"$r")"
token=$(jq -r .token <<<"$r")
case "$token" in wgroam1:*) ;; *) fail "invite: no token: $r" ;; esac
[ "$(jq -r .name <<<"$r")" = kitchen ] || fail "invite: name: $r"
exp=$(jq -r .expires <<<"$r")
[ "$exp" -ge $((t0 + 7200)) ] && [ "$exp" -le $(($(date +%s) + 7200)) ] || fail "invite: expires $exp is not now + 2h"
[ "$(cli_list | jq -c '.[] | select(.name == "kitchen") | [.state, .expires]')" = "[\"pending\",$exp]" ] ||
  fail "wgroam invite --list does not show kitchen pending: $(cli_list)"
r=$(call invites '{}')
[ "$(jq -S . <<<"$r")" = "$(cli_list | jq -S '{invites: .}')" ] || fail "invites differs from --list --json: $r"
echo "ok: invites = {\"invites\": wgroam invite --list --json}: $r"
r=$(call invite '{"endpoint":"hub.example.org:51820"}')
[ "$(jq -r .name <<<"$r")" = travel-1 ] || fail "invite without a name: $r"
r=$(call revoke '{"name":"kitchen"}')
[ "$r" = '{"revoked":"kitchen"}' ] || fail "revoke: $r"
[ "$(cli_list | jq -r '.[] | select(.name == "kitchen") | .state')" = revoked ] || fail "not revoked: $(cli_list)"
[ "$(call invites '{}' | jq -r '.invites[] | select(.name == "kitchen") | .state')" = revoked ] || fail "invites: kitchen not revoked"
echo "ok: invite -> invites (pending) -> revoke -> invites (revoked)"

n=$(cli_list | jq length)
check_err() { # check_err METHOD ARGS CODE PATTERN
  local got
  got=$(call "$1" "$2")
  one_error "$got" "$3" "$4" || fail "$1 $2: expected a one-line error (exit $3, /$4/), got: $got"
  echo "ok: $1 $2 -> $got"
}
check_err invite '{"name":"a b","endpoint":"h.example.org:1"}' 2 "^name: 'a b' has characters"
check_err invite '{"name":"--list","endpoint":"h.example.org:1"}' 2 "^name: '--list' must not start with '-'"
check_err invite '{"name":7.5,"endpoint":"h.example.org:1"}' 2 "^name: expected a string"
check_err invite '{"ttl":"90d","endpoint":"h.example.org:1"}' 2 "^wgroam invite: --ttl: '90d'"
check_err invite '{"name":"x"}' 2 "^wgroam invite: --endpoint: missing"
check_err invite '{"interface":"wg9","endpoint":"h.example.org:1"}' 2 "wg9"
check_err revoke '{}' 2 "^name: missing"
check_err revoke '{"name":"nosuch"}' 2 "^wgroam invite: --revoke: no invite named 'nosuch'"
check_err join '{}' 2 "^token: missing"
damaged=${token%?}A
[ "$damaged" != "$token" ] || damaged=${token%?}B
check_err join "{\"token\":\"$damaged\",\"state_dir\":\"x\"}" 2 "^wgroam join: invite: "
check_err join '{"token":"wgroam1:x y"}' 2 "^token: "
[ "$(cli_list | jq length)" = "$n" ] || fail "a refused call wrote an invite: $(cli_list)"
! grep -qF "${token#wgroam1:}" "$tmp/argv" || fail "a token was on a command line: $(cat "$tmp/argv")"
! grep -qF "${damaged#wgroam1:}" "$tmp/argv" || fail "the join token was on a command line"
echo "ok: no token on any command line the plugin ran ($(wc -l <"$tmp/argv") runs)"

step "Invite a travel router, in chromium"
luci() { ip netns exec "$ns" node "$root/tests/luci/status-page.js" --config "$tmp/wgroam.conf" --wgroam "$tmp/wgroam" "$@"; }
luci --view wgroam/invite --width 1024 --shot "$shots/invite.png" \
  --fill '#wgroam-endpoint|hub.example.org:51820' --fill '#wgroam-name|lounge' --fill '#wgroam-ttl|30m' \
  --click '#wgroam-create' --wait '.wgroam-token' --wait '.wgroam-invites tr[data-name=lounge]' \
  --expect 'Invite lounge, valid until' --expect 'kitchen' \
  --expect-attr '.wgroam-invites tr[data-name=lounge]|data-state|pending' \
  --expect-attr '.wgroam-invites tr[data-name=kitchen]|data-state|revoked' \
  --save-text ".wgroam-token|$tmp/page-token" --save-text ".wgroam-qr|$tmp/page-qr.svg|html" >"$tmp/invite.log" ||
  { cat "$tmp/invite.log"; fail "invite page"; }
grep -E '^(ok|FAIL|clicked|ubus)' "$tmp/invite.log"
ptoken=$(cat "$tmp/page-token")
[ "$(cli_list | jq -r '.[] | select(.name == "lounge") | .state')" = pending ] || fail "the page's invite is not in wgroam invite --list: $(cli_list)"
"$bin" invite --list --config "$tmp/wgroam.conf" | grep -E '^lounge ' || fail "wgroam invite --list: no lounge"
# The token is the hub's: version byte, then this hub's WireGuard public key.
key=$(python3 -c 'import base64,sys; t=sys.argv[1].split(":",1)[1]; b=base64.urlsafe_b64decode(t+"="*(-len(t)%4)); print(base64.b64encode(b[1:33]).decode())' "$ptoken")
[ "$key" = "$hub_pub" ] || fail "the page's token carries key $key, the hub's is $hub_pub"
echo "ok: the page's token carries this hub's WireGuard key"
# The QR code drawn is the token's (LuCI's encoder, same options as the view).
want_svg=$(cd "$root/tests/luci" && node -e 'const u=require("uqr"); process.stdout.write(u.renderSVG(process.argv[1], {pixelSize: 4, whiteColor: "white", blackColor: "black"}))' "$ptoken")
# (The browser serialises <rect/> as <rect></rect>: compare the modules drawn.)
modules() { grep -o ' d="[^"]*"' | head -n1; }
got_d=$(modules <"$tmp/page-qr.svg")
[ "${#got_d}" -gt 1000 ] || fail "no QR code drawn on the page: $(head -c 300 "$tmp/page-qr.svg")"
[ "$got_d" = "$(modules <<<"$want_svg")" ] || fail "the QR code on the page is not the token's"
echo "ok: the QR code on the page encodes the token shown"
luci --view wgroam/invite --click '.wgroam-revoke[data-name=lounge]' \
  --wait '.wgroam-invites tr[data-name=lounge][data-state=revoked]' --expect 'Revoked lounge.' >"$tmp/revoke.log" ||
  { cat "$tmp/revoke.log"; fail "revoke on the page"; }
grep -E '^(ok|FAIL|clicked|ubus)' "$tmp/revoke.log"
[ "$(cli_list | jq -r '.[] | select(.name == "lounge") | .state')" = revoked ] || fail "the page's Revoke did not revoke: $(cli_list)"
echo "ok: Revoke on the page -> wgroam invite --list shows lounge revoked"

step "Join a hub, in chromium: a damaged token"
want=$(printf '%s\n' "$damaged" | "$bin" join - --state-dir "$tmp/run" 2>&1 >/dev/null) && fail "wgroam join took a damaged token"
luci --view wgroam/join --width 390 --fill "#wgroam-token|$damaged" --click '#wgroam-join' --wait '.wgroam-error' \
  --expect-attr ".wgroam-error|text|$want" >"$tmp/join.log" || { cat "$tmp/join.log"; fail "join page"; }
grep -E '^(ok|FAIL|clicked|ubus)' "$tmp/join.log"
echo "screenshot: $shots/invite.png"
echo "PASS"
