#!/usr/bin/env bash
# Checks a pair of packages built by scripts/package.sh for one architecture:
#
#   tests/pkg/check-packages.sh IPK APK [BINARY]
#
# Unpacks them with standard tools (tar for the .ipk, tests/pkg/apk-inspect.py
# for the apk v3 .apk) and checks the layout, control fields, file modes,
# conffiles and maintainer scripts, that both carry the same files (and
# BINARY as /usr/sbin/wgroam when given), and runs the packaged OpenWrt
# scripts in a stub OpenWrt environment (tests/pkg/stubs.sh) under busybox
# ash: the procd init script's start/triggers/reload/status, the iface and
# ntp hotplug scripts against a live fake agent (signals received, no fork),
# uci-defaults, postinst and prerm.
# Closing line: "pkg: N passed, N failed"; exit 1 if anything failed.
#
# The single-quoted sh -c programs expand in the child shell, by design:
# shellcheck disable=SC2016
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[ "$#" -ge 2 ] || {
  echo "usage: tests/pkg/check-packages.sh IPK APK [BINARY]" >&2
  exit 2
}
ipk=$(realpath "$1")
apk=$(realpath "$2")
binary=${3:+$(realpath "$3")}

passed=0 failed=0
ok() {
  passed=$((passed + 1))
  echo "ok: $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL: $*"
}
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

# The shell OpenWrt runs these scripts with.
if command -v busybox >/dev/null && busybox sh -c true 2>/dev/null; then
  SH=(busybox sh)
else
  SH=(dash)
fi

tmp=$(mktemp -d)
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

name=$(basename "$ipk")
echo "pkg: checking $name and $(basename "$apk") (scripts run by ${SH[*]})"

# ---------------------------------------------------------------- .ipk layout
mkdir -p "$tmp/ipk" "$tmp/data" "$tmp/control"
check "ipk is a gzip'd tar (not ar)" gzip -t "$ipk"
outer=$(tar -tzf "$ipk" | tr '\n' ' ')
check "ipk holds ./debian-binary ./data.tar.gz ./control.tar.gz ($outer)" \
  test "$outer" = "./debian-binary ./data.tar.gz ./control.tar.gz "
tar -xzf "$ipk" -C "$tmp/ipk"
check "debian-binary is 2.0" test "$(cat "$tmp/ipk/debian-binary")" = 2.0
tar -xzf "$tmp/ipk/data.tar.gz" -C "$tmp/data"
tar -xzf "$tmp/ipk/control.tar.gz" -C "$tmp/control"
data=$tmp/data ctl=$tmp/control

owners=$(tar -tzvf "$tmp/ipk/data.tar.gz" | awk '{print $2}' | sort -u | tr '\n' ' ')
check "data files owned by 0/0 ($owners)" test "$owners" = "0/0 "

# path -> mode, as installed on the router.
declare -A want_mode=(
  [usr/sbin/wgroam]=755
  [etc/init.d/wgroam]=755
  [etc/config/wgroam]=600
  [etc/uci-defaults/50-wgroam]=755
  [etc/hotplug.d/iface/95-wgroam]=644
  [etc/hotplug.d/ntp/95-wgroam]=644
  [usr/libexec/rpcd/wgroam]=755
  [etc/capabilities/wgroam.json]=644
)
files=$(cd "$data" && find . -type f | sed 's#^\./##' | sort | tr '\n' ' ')
want=$(printf '%s\n' "${!want_mode[@]}" | sort | tr '\n' ' ')
check "ipk installs exactly: $want" test "$files" = "$want"
for f in "${!want_mode[@]}"; do
  m=$(stat -c %a "$data/$f" 2>/dev/null || echo missing)
  check "ipk /$f mode $m (want ${want_mode[$f]})" test "$m" = "${want_mode[$f]}"
done
dmodes=$(cd "$data" && find . -type d -printf '%m\n' | sort -u | tr '\n' ' ')
check "ipk directories are 755 ($dmodes)" test "$dmodes" = "755 "

field() { sed -n "s/^$1: //p" "$ctl/control"; }
arch=$(field Architecture)
version=$(field Version)
check "control Package: wgroam" test "$(field Package)" = wgroam
check "control Version $version matches the file name" \
  test "$name" = "wgroam_${version}_${arch}.ipk"
check "control Version is valid for apk" \
  grep -Eq '^[0-9]+(\.[0-9]+)*[a-z]?(_[a-z]+[0-9]*)*(-r[0-9]+)?$' <<<"$version"
case "$arch" in
mips_24kc | mipsel_24kc | arm_cortex-a7_neon-vfpv4 | arm_cortex-a9 | aarch64_cortex-a53 | aarch64_generic | x86_64)
  ok "control Architecture $arch is an OpenWrt package architecture"
  ;;
*) fail "control Architecture '$arch' is not an OpenWrt package architecture" ;;
esac
check "control Depends: kmod-wireguard, wireguard-tools" \
  test "$(field Depends)" = "kmod-wireguard, wireguard-tools"
check "control License: GPL-2.0-or-later" test "$(field License)" = GPL-2.0-or-later
size=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
check "control Installed-Size is the payload's $size bytes" test "$(field Installed-Size)" = "$size"
check "control has a Description" grep -q '^Description: .' "$ctl/control"
check "conffiles lists exactly /etc/config/wgroam" \
  test "$(cat "$ctl/conffiles")" = /etc/config/wgroam
for s in postinst prerm; do
  check "control/$s is executable" test -x "$ctl/$s"
done
if [ -n "$binary" ]; then
  check "ipk /usr/sbin/wgroam is the built binary" cmp -s "$binary" "$data/usr/sbin/wgroam"
fi
# The packaged binary says the package's version (natively, or under qemu-user).
case "$arch" in
mips_*) runner=qemu-mips-static ;;
mipsel_*) runner=qemu-mipsel-static ;;
arm_*) runner=qemu-arm-static ;;
aarch64_*) runner=qemu-aarch64-static ;;
*) runner= ;;
esac
if [ -n "$runner" ] && ! command -v "$runner" >/dev/null; then
  fail "$runner missing (scripts/install-deps.sh): cannot run the packaged binary"
else
  said=$($runner "$data/usr/sbin/wgroam" --version 2>&1 || true)
  check "wgroam --version says the package version ('$said')" test "$said" = "wgroam $version"
fi

# ---------------------------------------------------------------- .apk layout
if python3 "$here/apk-inspect.py" "$apk" --extract "$tmp/apkdata" >"$tmp/apk.json" 2>"$tmp/apk.err"; then
  ok "apk parses as apk v3 (ADB): blocks, values, sort order, DATA order, sha256"
else
  fail "apk does not parse: $(cat "$tmp/apk.err")"
fi
jq_() { python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$tmp/apk.json" "$1"; }
if [ -s "$tmp/apk.json" ]; then
  check "apk name wgroam" test "$(jq_ 'm["name"]')" = wgroam
  check "apk version $version (as the ipk)" test "$(jq_ 'm["version"]')" = "$version"
  check "apk arch $arch (as the ipk)" test "$(jq_ 'm["arch"]')" = "$arch"
  check "apk file name as the 25.12 SDK names it (no arch)" test "$(basename "$apk")" = "wgroam-$version.apk"
  check "apk depends kmod-wireguard wireguard-tools" \
    test "$(jq_ '" ".join(d["name"] for d in m["depends"])')" = "kmod-wireguard wireguard-tools"
  check "apk license" test "$(jq_ 'm["license"]')" = GPL-2.0-or-later
  apk_modes=$(jq_ '"\n".join(sorted((p["name"]+"/"+f["name"]).lstrip("/")+" "+f["acl"]["mode"][1:] for p in m["paths"] for f in p["files"]))')
  ipk_modes=$( (cd "$data" && find . -type f -printf '%P %m\n') | sort)
  extra=$(printf '%s\n' lib/apk/packages/wgroam.conffiles lib/apk/packages/wgroam.conffiles_static lib/apk/packages/wgroam.list | sed 's/$/ 644/')
  check "apk carries the ipk's files with the same modes, plus lib/apk/packages metadata" \
    test "$apk_modes" = "$(printf '%s\n%s\n' "$ipk_modes" "$extra" | sort)"
  same=1
  while read -r f _; do
    cmp -s "$data/$f" "$tmp/apkdata/$f" || same=0
  done <<<"$ipk_modes"
  check "apk file contents equal the ipk's" test "$same" = 1
  check "apk lib/apk/packages/wgroam.conffiles" \
    test "$(cat "$tmp/apkdata/lib/apk/packages/wgroam.conffiles")" = /etc/config/wgroam
  check "apk conffiles_static carries the config's sha256" \
    test "$(cat "$tmp/apkdata/lib/apk/packages/wgroam.conffiles_static")" = \
    "/etc/config/wgroam $(sha256sum "$data/etc/config/wgroam" | cut -d' ' -f1)"
  check "apk list names every installed file" \
    test "$(cat "$tmp/apkdata/lib/apk/packages/wgroam.list")" = "$( (cd "$data" && find . -type f -printf '/%P\n') | LC_ALL=C sort)"
  for s in post-install pre-deinstall post-upgrade; do
    python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["scripts"].get(sys.argv[2], ""))' \
      "$tmp/apk.json" "$s" >"$tmp/apk-$s"
  done
  check "apk post-install is the ipk postinst" diff -q "$ctl/postinst" "$tmp/apk-post-install"
  check "apk pre-deinstall is the ipk prerm" diff -q "$ctl/prerm" "$tmp/apk-pre-deinstall"
  check "apk post-upgrade is postinst with PKG_UPGRADE=1" \
    test "$(sed -n 2p "$tmp/apk-post-upgrade")" = "export PKG_UPGRADE=1"
fi

# ----------------------------------------------------------- script syntax
for f in etc/init.d/wgroam etc/uci-defaults/50-wgroam etc/hotplug.d/iface/95-wgroam etc/hotplug.d/ntp/95-wgroam usr/libexec/rpcd/wgroam; do
  check "sh -n /$f" "${SH[@]}" -n "$data/$f"
done
for f in postinst prerm; do
  check "sh -n control/$f" "${SH[@]}" -n "$ctl/$f"
done
init=$data/etc/init.d/wgroam
check "init script runs under rc.common" test "$(head -n1 "$init")" = "#!/bin/sh /etc/rc.common"
check "init script uses procd (USE_PROCD=1)" grep -qx 'USE_PROCD=1' "$init"
check "init script has START and STOP" grep -Eq '^START=[0-9]+$' "$init"

# ---------------------------------------------------- init script vs procd
# A fake wgroam: `check` exits $STUB_CHECK_RC with a problem on stderr.
cat >"$tmp/wgroam-stub" <<'EOF'
#!/bin/sh
printf 'wgroam %s\n' "$*" >>"$CALLS"
case "$1" in
check)
	[ "${STUB_CHECK_RC:-0}" = 0 ] || echo "wgroam.agent.role: missing; expected 'hub' or 'roam'" >&2
	exit "${STUB_CHECK_RC:-0}"
	;;
status) echo "status: fine" ;;
esac
EOF
chmod +x "$tmp/wgroam-stub"

mkdir -p "$tmp/uci"
# init ACTION [ARGS]: runs one init function in the stub environment; calls
# are recorded in $CALLS (one "name args" per line).
init() {
  : >"$tmp/calls"
  CALLS=$tmp/calls UCI_CONFIG_DIR=$tmp/uci "${SH[@]}" -c '
		. "$1"; . "$2"
		PROG=$3 CONF=$UCI_CONFIG_DIR/wgroam PIDFILE=$4/wgroam.pid RUNDIR=$4/run MANAGED=$4/run/managed
		UJAIL=${STUB_UJAIL:-$4/no-ujail} CAPS=$4/caps.json UCI_SAVE=$4/uci-save
		fn=$5; shift 5
		"$fn" "$@"
	' init "$here/stubs.sh" "$init" "$tmp/wgroam-stub" "$tmp" "$@"
}
calls() { cat "$tmp/calls"; }
has() { grep -qxF -- "$1" "$tmp/calls"; }

cp "$data/etc/config/wgroam" "$tmp/uci/wgroam"
rc=0
STUB_CHECK_RC=0 init start_service >"$tmp/out" 2>&1 || rc=$?
check "start_service succeeds when the config checks out" test "$rc" = 0
check "start_service validates first: wgroam check --config" has "wgroam check --config $tmp/uci/wgroam"
check "procd command: wgroam run --config $tmp/uci/wgroam" \
  has "procd_set_param command $tmp/wgroam-stub run --config $tmp/uci/wgroam"
check "procd respawn 3600 5 5" has "procd_set_param respawn 3600 5 5"
check "procd reload_signal HUP" has "procd_set_param reload_signal HUP"
check "procd pidfile" has "procd_set_param pidfile $tmp/wgroam.pid"
check "procd stderr to syslog" has "procd_set_param stderr 1"
check "one procd instance, opened and closed" \
  test "$(grep -c '^procd_open_instance' "$tmp/calls")/$(grep -c '^procd_close_instance' "$tmp/calls")" = 1/1
check "managed interfaces written for the iface hotplug (wg0)" \
  test "$(cat "$tmp/run/managed" 2>/dev/null)" = "$(printf 'wg0\nwg0')"

rc=0
STUB_CHECK_RC=1 init start_service >"$tmp/out" 2>&1 || rc=$?
check "an environment problem (check exit 1, e.g. wg0 not up yet) still starts" \
  test "$rc/$(grep -c '^procd_open_instance' "$tmp/calls")" = 0/1

rc=0
STUB_CHECK_RC=2 init start_service >"$tmp/out" 2>&1 || rc=$?
check "a config problem (check exit 2) does not start: exit $rc, no instance" \
  test "$rc" != 0 -a "$(grep -c '^procd_open_instance' "$tmp/calls")" = 0
check "the problem goes to syslog" grep -q '^logger -t wgroam -p daemon.err' "$tmp/calls"
check "the problem is shown to the user" grep -q "role: missing" "$tmp/out"

init start_service >"$tmp/out" 2>&1
check "no ujail (/sbin/ujail missing): the agent starts without capabilities or jail" \
  sh -c 'grep -q "^procd_open_instance" "$1" && ! grep -q "capabilities\|no_new_privs\|procd_add_jail" "$1"' sh "$tmp/calls"

# Least privilege where /sbin/ujail exists.
caps=$data/etc/capabilities/wgroam.json
check "capabilities file is valid JSON with exactly CAP_NET_ADMIN and CAP_NET_RAW in all five sets" \
  python3 -c 'import json,sys
m = json.load(open(sys.argv[1]))
want = ["CAP_NET_ADMIN", "CAP_NET_RAW"]
sys.exit(0 if sorted(m) == ["ambient", "bounding", "effective", "inheritable", "permitted"] and all(sorted(v) == want for v in m.values()) else 1)' "$caps"
cp "$caps" "$tmp/caps.json"
printf '#!/bin/sh\n' >"$tmp/ujail"
chmod +x "$tmp/ujail"
cp "$tmp/uci/wgroam" "$tmp/uci/wgroam.orig"
printf "config agent 'agent'\n\toption role 'hub'\n\toption state_dir '%s'\n\toption state_file '%s'\nconfig interface 'wg0'\n" \
  "$tmp/jail/run" "$tmp/jail/lib/state.json" >"$tmp/uci/wgroam"
STUB_UJAIL=$tmp/ujail init start_service >"$tmp/out" 2>&1
check "ujail: procd capabilities file" has "procd_set_param capabilities $tmp/caps.json"
check "ujail: no_new_privs" has "procd_set_param no_new_privs 1"
check "ujail: jail with syslog, ubus and procfs (sysctls), nothing more" has "procd_add_jail wgroam log ubus procfs"
check "ujail: writable: /etc/config (uci commit), uci's save dir, the state dir, the state file's dir, the hotplug flags' dir" \
  has "procd_add_jail_mount_rw /etc/config $tmp/uci-save $tmp/jail/run $tmp/jail/lib $tmp/run"
check "ujail: the writable directories exist before the jail starts" \
  test -d "$tmp/uci-save" -a -d "$tmp/jail/run" -a -d "$tmp/jail/lib"
check "ujail: read-only mounts only of what exists, from the known list" \
  sh -c '! grep "^procd_add_jail_mount " "$1" | grep -vE "^procd_add_jail_mount (/etc/hosts|/etc/resolv.conf|/tmp/resolv.conf.d|/tmp/resolv.conf.auto|/sbin/uci|/bin/ubus|/usr/sbin/nft|/var/run/wireguard)$"' sh "$tmp/calls"
check "ujail: the jail is set inside the instance (before procd_close_instance)" \
  test "$(grep -n 'procd_add_jail wgroam' "$tmp/calls" | cut -d: -f1)" -lt "$(grep -n '^procd_close_instance' "$tmp/calls" | cut -d: -f1)"
mv "$tmp/uci/wgroam.orig" "$tmp/uci/wgroam"

init service_triggers
check "reload trigger on config wgroam and network" has "procd_add_reload_trigger wgroam network"
check "interface trigger for the managed wg0" has "procd_add_reload_interface_trigger wg0"

cat >"$tmp/uci/wgroam" <<'EOF'
config agent 'agent'
	option role 'hub'

config interface 'wgx'
	option ifname 'wg-x'

config interface 'wgoff'
	option enabled '0'

config interface 'wgy'
EOF
init service_triggers
check "interface triggers for each enabled interface section (wgx wgy)" \
  test "$(grep '^procd_add_reload_interface_trigger' "$tmp/calls" | tr '\n' ' ')" = \
  "procd_add_reload_interface_trigger wgx procd_add_reload_interface_trigger wgy "
init start_service >/dev/null 2>&1
check "managed list holds interfaces and devices (wgx wgy wg-x wgy)" \
  test "$(tr '\n' ' ' <"$tmp/run/managed")" = "wgx wgy wg-x wgy "

STUB_RUNNING=1 init reload_service
check "reload of a running agent sends SIGHUP through procd" has "procd_send_signal wgroam * HUP"
check "... and does not restart it" test "$(grep -c '^procd_open_instance' "$tmp/calls")" = 0
STUB_RUNNING=0 init reload_service
check "reload of a stopped agent starts it" test "$(grep -c '^procd_open_instance' "$tmp/calls")" = 1

init status_service --json >"$tmp/out"
check "status runs wgroam status (args passed on)" has "wgroam status --json"
check "status prints the agent's answer" grep -qx "status: fine" "$tmp/out"

# ------------------------------------------------------- rpcd plugin (ubus)
# rpcd's exec plugin protocol: `list` prints the signatures (one JSON object),
# `call METHOD` gets the arguments on stdin and prints one JSON object. The
# equality with a real agent's `wgroam status --json` is checked in the lab
# (tests/e2e/80-luci-status.sh); here: the protocol and the error path.
plugin=$data/usr/libexec/rpcd/wgroam
check "rpcd plugin: list is one JSON object naming exactly status, invite, invites, revoke, join" \
  test "$("${SH[@]}" "$plugin" list | python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin))))')" = 'invite invites join revoke status'
cat >"$tmp/wgroam-status" <<'EOF'
#!/bin/sh
printf 'wgroam %s\n' "$*" >>"$CALLS"
case "$STUB_STATUS" in
running) echo '{"version":1,"role":"hub","pid":1,"interfaces":[]}' ;;
stopped) printf '%s\n' "status: the agent (pid 77) is not running; last status at /var/run/wgroam/status.json \"x\"" >&2; exit 3 ;;
esac
EOF
chmod +x "$tmp/wgroam-status"
rpc() { echo '{}' | CALLS=$tmp/calls WGROAM_BIN=$tmp/wgroam-status WGROAM_CONFIG=$tmp/uci/wgroam STUB_STATUS=$1 "${SH[@]}" "$plugin" call status; }
: >"$tmp/calls"
check "rpcd plugin: call status passes wgroam status --json through" \
  test "$(rpc running)" = '{"version":1,"role":"hub","pid":1,"interfaces":[]}'
check "rpcd plugin: ... asking the agent named by the config" \
  has "wgroam status --json --config $tmp/uci/wgroam"
check "rpcd plugin: agent not running: one JSON object with its message and exit status" \
  test "$(rpc stopped | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["exit"], m["error"])')" = \
  '3 status: the agent (pid 77) is not running; last status at /var/run/wgroam/status.json "x"'
check "rpcd plugin: an unknown method is refused" \
  sh -c '! echo "{}" | "$@" call frobnicate >/dev/null 2>&1' sh "${SH[@]}" "$plugin"
# The pairing methods with the packaged binary (when it runs here): what
# needs no WireGuard device. The full invite -> invites -> revoke cycle and the
# views: tests/e2e/81-luci-pairing.sh.
if [ -n "$binary" ] && "$binary" --version >/dev/null 2>&1; then
  mkdir -p "$tmp/pair/run"
  printf "config agent 'agent'\n\toption role 'hub'\n\toption state_dir '%s'\n\nconfig interface 'wgpkgnone'\n\toption pool '2001:db8:100::/48'\n" \
    "$tmp/pair/run" >"$tmp/pair/wgroam"
  pcall() { printf '%s' "$2" | WGROAM_BIN=$binary WGROAM_CONFIG=$tmp/pair/wgroam "${SH[@]}" "$plugin" call "$1"; }
  check "rpcd plugin: invites with none made is {\"invites\":[]}" test "$(pcall invites '{}')" = '{"invites":[]}'
  check "rpcd plugin: revoke of an unknown invite: wgroam's one-line error and exit 2" \
    test "$(pcall revoke '{"name":"nosuch"}')" = '{"error":"wgroam invite: --revoke: no invite named '"'nosuch'"' (see wgroam invite --list)","exit":2}'
  check "rpcd plugin: a name with a space is refused naming the field" \
    test "$(pcall revoke '{"name":"a b"}' | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["exit"], m["error"].split(":")[0])')" = "2 name"
  check "rpcd plugin: an option smuggled as a value is refused" \
    test "$(pcall invite '{"name":"--list","endpoint":"h:1"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["exit"])')" = 2
  check "rpcd plugin: invite on a hub whose WireGuard device does not exist: wgroam's error, exit 1" \
    test "$(pcall invite '{"endpoint":"h.example.org:1"}' | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["exit"], "wgpkgnone" in m["error"] and "\n" not in m["error"])')" = "1 True"
  check "rpcd plugin: join with a damaged token: wgroam join's error, exit 2" \
    test "$(pcall join '{"token":"wgroam1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}' | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["exit"], m["error"].startswith("wgroam join: invite: "))')" = "2 True"
  check "rpcd plugin: refused calls wrote no invite" test "$(pcall invites '{}')" = '{"invites":[]}'
fi

# ------------------------------------------------------------ hotplug: iface
# A live fake agent whose process name is "wgroam", logging the signals it gets.
mkdir -p "$tmp/agent"
cat >"$tmp/agent/wgroam" <<EOF
#!/bin/bash
trap 'echo USR1 >>"$tmp/signals"' USR1
trap 'echo USR2 >>"$tmp/signals"' USR2
: >"\$0.ready"
for _ in \$(seq 1200); do sleep 0.05; done
EOF
chmod +x "$tmp/agent/wgroam"
"$tmp/agent/wgroam" &
agent_pid=$!
for _ in $(seq 50); do
  [ "$(cat "/proc/$agent_pid/comm" 2>/dev/null)" = wgroam ] && [ -e "$tmp/agent/wgroam.ready" ] && break
  sleep 0.1
done
echo "$agent_pid" >"$tmp/agent.pid"
mkdir -p "$tmp/sys/eth1" "$tmp/sys/wg0" "$tmp/hotrun"
echo "INTERFACE=eth1" >"$tmp/sys/eth1/uevent"
printf 'DEVTYPE=wireguard\nINTERFACE=wg0\n' >"$tmp/sys/wg0/uevent"
printf 'wg0\nwg0\n' >"$tmp/hotrun/managed"

# hotplug SCRIPT VAR=VALUE...: sourced as hotplug-call does; prints the
# signals the agent got.
hotplug() {
  local script=$1
  shift
  : >"$tmp/signals"
  env -i PATH="$PATH" WGROAM_PIDFILE="$tmp/agent.pid" WGROAM_MANAGED="$tmp/hotrun/managed" \
    WGROAM_SYSNET="$tmp/sys" WGROAM_RUNDIR="$tmp/hotrun" "$@" "${SH[@]}" -c '( . "$1" )' hotplug "$script"
  sleep 0.15
  tr '\n' ' ' <"$tmp/signals"
}
iface=$data/etc/hotplug.d/iface/95-wgroam
check "ifup of the uplink wan/eth1 signals USR1" \
  test "$(hotplug "$iface" ACTION=ifup INTERFACE=wan DEVICE=eth1)" = "USR1 "
check "ifdown of the uplink signals USR1" \
  test "$(hotplug "$iface" ACTION=ifdown INTERFACE=wan DEVICE=eth1)" = "USR1 "
check "ifupdate of the uplink signals USR1" \
  test "$(hotplug "$iface" ACTION=ifupdate INTERFACE=wan DEVICE=eth1)" = "USR1 "
check "ifup of a WireGuard device is ignored" \
  test "$(hotplug "$iface" ACTION=ifup INTERFACE=vpn DEVICE=wg0)" = ""
check "ifdown of a managed interface (device gone) is ignored" \
  test "$(hotplug "$iface" ACTION=ifdown INTERFACE=wg0 DEVICE=)" = ""
check "other actions (iflink, ifup-failed) are ignored" \
  test "$(hotplug "$iface" ACTION=iflink INTERFACE=wan DEVICE=eth1)$(hotplug "$iface" ACTION=ifup-failed INTERFACE=wan DEVICE=eth1)" = ""
if command -v strace >/dev/null; then
  env -i PATH="$PATH" WGROAM_PIDFILE="$tmp/agent.pid" WGROAM_MANAGED="$tmp/hotrun/managed" \
    WGROAM_SYSNET="$tmp/sys" ACTION=ifup INTERFACE=wan DEVICE=eth1 \
    strace -f -qq -e trace=fork,vfork,clone,clone3,execve -o "$tmp/strace" \
    "${SH[@]}" -c '. "$1"' hotplug "$iface"
  forks=$(grep -cE 'fork\(|clone3?\(' "$tmp/strace" || true)
  execs=$(grep -c 'execve(' "$tmp/strace" || true)
  check "iface hotplug forks nothing ($forks forks, $execs exec: the shell itself)" \
    test "$forks" = 0 -a "$execs" = 1
else
  fail "strace missing (scripts/install-deps.sh installs it): cannot count forks"
fi
# procd runs a jailed agent through ujail, which forwards signals: the pid
# file then names a process called "ujail".
cp "$tmp/agent/wgroam" "$tmp/agent/ujail"
"$tmp/agent/ujail" &
jail_pid=$!
for _ in $(seq 50); do
  [ "$(cat "/proc/$jail_pid/comm" 2>/dev/null)" = ujail ] && [ -e "$tmp/agent/ujail.ready" ] && break
  sleep 0.1
done
echo "$jail_pid" >"$tmp/agent.pid"
sleep 0.2 # the USR1 of the strace run above reaches the other fake first
got=$(hotplug "$iface" ACTION=ifup INTERFACE=wan DEVICE=eth1)
check "a jailed agent (pid file names $(cat "/proc/$jail_pid/comm" 2>/dev/null)) gets USR1 on an uplink ifup ($got)" \
  test "$got" = "USR1 "
kill "$jail_pid" 2>/dev/null || true
echo "$agent_pid" >"$tmp/agent.pid"
sleep 30 &
sleep_pid=$!
echo "$sleep_pid" >"$tmp/other.pid"
env -i PATH="$PATH" WGROAM_PIDFILE="$tmp/other.pid" WGROAM_MANAGED="$tmp/hotrun/managed" \
  WGROAM_SYSNET="$tmp/sys" ACTION=ifup INTERFACE=wan DEVICE=eth1 "${SH[@]}" -c '. "$1"' hotplug "$iface"
sleep 0.2
check "a stale pid file naming another process sends it nothing" kill -0 "$sleep_pid"
kill "$sleep_pid" 2>/dev/null || true
rc=0
env -i PATH="$PATH" WGROAM_PIDFILE="$tmp/none.pid" ACTION=ifup INTERFACE=wan DEVICE=eth1 \
  "${SH[@]}" -c '. "$1"' hotplug "$iface" || rc=$?
check "no agent running: iface hotplug is a quiet no-op" test "$rc" = 0

# -------------------------------------------------------------- hotplug: ntp
ntp=$data/etc/hotplug.d/ntp/95-wgroam
rm -rf "$tmp/hotrun"
check "ntp stratum 16 (unsynchronised) does nothing" \
  test "$(hotplug "$ntp" ACTION=stratum stratum=16)" = "" -a ! -e "$tmp/hotrun/ntp-synced"
check "ntp stratum 2 flags the clock as synced and signals USR2" \
  test "$(hotplug "$ntp" ACTION=stratum stratum=2)" = "USR2 " -a -f "$tmp/hotrun/ntp-synced"
rm -f "$tmp/hotrun/ntp-synced"
check "ntp step flags and signals too" \
  test "$(hotplug "$ntp" ACTION=step)" = "USR2 " -a -f "$tmp/hotrun/ntp-synced"
check "ntp periodic does nothing" test "$(hotplug "$ntp" ACTION=periodic stratum=2)" = ""
kill "$agent_pid" 2>/dev/null || true
agent_pid=

# ------------------------------------------------------------- uci-defaults
# uci-defaults [NETWORK]: runs 50-wgroam against $tmp/ud (wgroam config as
# prepared), network as given; prints the uci commands it ran.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/uci" <<EOF
#!/bin/sh
echo "uci \$*" >>"$tmp/uci-calls"
EOF
chmod +x "$tmp/bin/uci"
sed "s#^\. /lib/functions.sh\$#. $here/stubs.sh#" "$data/etc/uci-defaults/50-wgroam" >"$tmp/50-wgroam"
check "uci-defaults sources /lib/functions.sh (rewritten for the test)" \
  test "$(grep -c "^\. $here/stubs.sh" "$tmp/50-wgroam")" = 1
ud() {
  : >"$tmp/uci-calls"
  local rc=0
  PATH="$tmp/bin:$PATH" UCI_CONFIG_DIR=$tmp/ud CALLS=$tmp/calls "${SH[@]}" "$tmp/50-wgroam" || rc=$?
  [ "$rc" = 0 ] || echo "exit $rc"
  grep -v ' commit ' "$tmp/uci-calls" | tr '\n' ' '
}
mkdir -p "$tmp/ud"
cp "$data/etc/config/wgroam" "$tmp/ud/wgroam"
cat >"$tmp/ud/network" <<'EOF'
config interface 'lan'
	option proto 'static'
config interface 'wgvpn'
	option proto 'wireguard'
EOF
check "uci-defaults leaves the shipped config alone" test "$(ud)" = ""
cp "$tmp/ud/wgroam" "$tmp/ud/wgroam.before"
: >"$tmp/ud/wgroam"
check "empty config: adds the agent section and the one WireGuard interface" \
  test "$(ud)" = "uci -c $tmp/ud -q set wgroam.agent=agent uci -c $tmp/ud -q set wgroam.wgvpn=interface "
rm "$tmp/ud/wgroam"
check "missing config file: created, then filled the same way" \
  test "$(ud)" = "uci -c $tmp/ud -q set wgroam.agent=agent uci -c $tmp/ud -q set wgroam.wgvpn=interface " -a -e "$tmp/ud/wgroam"
printf 'config interface %s\n\toption proto %s\n' "'wgtwo'" "'wireguard'" >>"$tmp/ud/network"
: >"$tmp/ud/wgroam"
check "two WireGuard interfaces: no guess, only the agent section" \
  test "$(ud)" = "uci -c $tmp/ud -q set wgroam.agent=agent "
printf "config agent 'main'\n\toption role 'roam'\nconfig interface 'wgtwo'\n" >"$tmp/ud/wgroam"
check "a user's own agent/interface sections are never touched" test "$(ud)" = ""

# ---------------------------------------------------------- postinst, prerm
mkdir -p "$tmp/root/etc/init.d"
cat >"$tmp/root/etc/rc.common" <<EOF
#!/bin/sh
echo "rc.common \$*" >>"$tmp/rc-calls"
EOF
maint() { # maint SCRIPT VAR=VALUE...: prints what it did
  : >"$tmp/rc-calls"
  local s=$1
  shift
  env "$@" "${SH[@]}" "$ctl/$s" >/dev/null 2>&1 || echo "exit $?"
  tr '\n' ' ' <"$tmp/rc-calls"
}
check "postinst in an image build (IPKG_INSTROOT) enables the service there" \
  test "$(maint postinst IPKG_INSTROOT="$tmp/root")" = "rc.common $tmp/root/etc/init.d/wgroam enable "
check "prerm in an image build disables it there" \
  test "$(maint prerm IPKG_INSTROOT="$tmp/root")" = "rc.common $tmp/root/etc/init.d/wgroam disable "
check "IPKG_NO_SCRIPT=1 skips postinst" test "$(maint postinst IPKG_NO_SCRIPT=1 IPKG_INSTROOT="$tmp/root")" = ""

# On a live system the scripts use /etc (and /tmp) themselves: run them in a
# private mount namespace with a scratch /etc and /tmp holding stand-ins. The
# init script stand-in keeps procd's view: which binary runs (`start` of a
# running service changes nothing: procd sees the same command line) and
# whether the service is enabled.
cat >"$tmp/init-standin" <<'EOF'
#!/bin/sh
echo "init $*" >>/etc/calls
st=/etc/state
case "$1" in
start) [ -s $st/running ] || cat $st/installed >$st/running ;;
stop) rm -f $st/running ;;
restart) rm -f $st/running; cat $st/installed >$st/running ;;
running) [ -s $st/running ] ;;
enable) : >$st/enabled ;;
disable) rm -f $st/enabled ;;
enabled) [ -e $st/enabled ] ;;
esac
EOF
live_reset() { # live_reset INSTALLED RUNNING(0/1) ENABLED(0/1)
  rm -rf "${tmp:?}/etc" "$tmp/tmpfs"
  mkdir -p "$tmp/etc/init.d" "$tmp/etc/uci-defaults" "$tmp/etc/state" "$tmp/tmpfs"
  cp "$tmp/init-standin" "$tmp/etc/init.d/wgroam"
  printf '#!/bin/sh\necho "rpcd $*" >>/etc/calls\n' >"$tmp/etc/init.d/rpcd"
  printf 'echo uci-defaults >>/etc/calls\nexit 0\n' >"$tmp/etc/uci-defaults/50-wgroam"
  chmod +x "$tmp/etc/init.d/wgroam" "$tmp/etc/init.d/rpcd"
  echo "$1" >"$tmp/etc/state/installed"
  if [ "$2" = 1 ]; then echo "$1" >"$tmp/etc/state/running"; fi
  if [ "$3" = 1 ]; then : >"$tmp/etc/state/enabled"; fi
  : >"$tmp/etc/calls"
}
live_run() { # live_run SCRIPTFILE VAR=VALUE...
  # The script is run from the scratch /etc: the scratch /tmp hides $tmp.
  cp "$1" "$tmp/etc/.script"
  shift
  env "$@" unshare --mount --propagation private "${SH[@]}" -c \
    'mount --bind "$1" /etc && mount --bind "$2" /tmp && shift 2 && exec "$@"' live "$tmp/etc" "$tmp/tmpfs" \
    "${SH[@]}" /etc/.script >/dev/null 2>&1 || echo "exit $?"
  rm -f "$tmp/etc/.script"
}
live_calls() {
  tr '\n' ' ' <"$tmp/etc/calls"
  if [ -e "$tmp/etc/uci-defaults/50-wgroam" ]; then echo "(uci-defaults kept)"; fi
}
live_state() {
  local r=none e=0
  [ -s "$tmp/etc/state/running" ] && r=$(cat "$tmp/etc/state/running")
  [ -e "$tmp/etc/state/enabled" ] && e=1
  echo "running=$r enabled=$e"
}
live() { # live SCRIPT VAR=VALUE...: a fresh router, prints the calls
  local s=$1
  shift
  live_reset new 0 0
  live_run "$ctl/$s" "$@"
  live_calls
}
# upgrade MANAGER RUNNING ENABLED: old -> new with opkg (old prerm, new
# postinst, both PKG_UPGRADE=1) or apk (only the new post-upgrade script,
# taken from the .apk); prints what runs and whether it is enabled.
upgrade() {
  live_reset old "$2" "$3"
  case "$1" in
  opkg)
    live_run "$ctl/prerm" PKG_UPGRADE=1
    echo new >"$tmp/etc/state/installed"
    live_run "$ctl/postinst" PKG_UPGRADE=1
    ;;
  apk)
    echo new >"$tmp/etc/state/installed"
    live_run "$tmp/apk-post-upgrade"
    ;;
  esac
  live_state
}
if [ "$(id -u)" = 0 ] && unshare --mount true 2>/dev/null; then
  got=$(live postinst)
  check "postinst on a router: uci-defaults run and removed, rpcd reloaded (ubus plugin), enable, start ($got)" \
    test "$got" = "uci-defaults rpcd reload init enable init start "
  got=$(live prerm)
  check "prerm on a router: disable, stop ($got)" \
    test "$got" = "init disable init stop (uci-defaults kept)"
  for pm in opkg apk; do
    got=$(upgrade $pm 1 1)
    check "$pm upgrade of a running, enabled agent: the NEW binary runs, still enabled ($got)" \
      test "$got" = "running=new enabled=1"
    got=$(upgrade $pm 1 0)
    check "$pm upgrade of a running agent the user disabled: the new binary runs, disable sticks ($got)" \
      test "$got" = "running=new enabled=0"
    got=$(upgrade $pm 0 0)
    check "$pm upgrade of a stopped, disabled agent: stays stopped and disabled ($got)" \
      test "$got" = "running=none enabled=0"
    got=$(upgrade $pm 0 1)
    check "$pm upgrade of an enabled agent that was not running: started, as at boot ($got)" \
      test "$got" = "running=new enabled=1"
  done
  check "opkg upgrade leaves no marker in /tmp" test -z "$(ls -A "$tmp/tmpfs")"
else
  fail "live postinst/prerm need root and unshare --mount (mount namespace)"
fi

echo "pkg: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
