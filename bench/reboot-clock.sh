#!/usr/bin/env bash
# Recovery after "R1 reboot without RTC (clock behind)" (issue 7, benchmark 1).
#
#   bash bench/reboot-clock.sh [RUNS] [CAP_S]      (defaults: 5 runs, 60 s cap)
#
# WireGuard initiations carry a TAI64N wall-clock stamp and the hub drops one
# not newer than the last it accepted from that peer. A router without RTC
# boots with its clock behind, so its initiations are dropped until NTP sets
# the clock. R1 therefore is a VM with its own clock (tests/vm: Debian kernel,
# kernel WireGuard, scenario roam-reboot-clock, under TCG), started with
# `-rtc base=` behind real time, on a TAP behind a NAT namespace; the hub is
# wireguard-go plus the wgroam hub agent in a namespace of its own:
#
#   wgrb-hub  wan 203.0.113.1/24, wgrb0 port 51820, 2001:db8:200::1/64
#   wgrb-nat  wan 203.0.113.2/24 (masquerade to 40000-40999, random),
#             wgrbtap 100.65.0.1/24 -- QEMU virtio NIC -- R1 eth0 100.65.0.2/24
#   R1 (VM)   wg0 2001:db8:200::2/64, random listen port, hub 203.0.113.1:51820
#
# One boot with the right clock first gives the hub its last stamp ("before
# the reboot"). Then every run boots R1 with its clock behind, SYNC_S seconds
# after R1's wg0 is configured "NTP" sets the guest's clock (the host sends
# the real time over the guest's second serial port; the guest sets it and,
# with the agent, does what OpenWrt's ntp hotplug does: flag file + SIGUSR2),
# and the hub pings R1's tunnel address every 100 ms from that moment.
# Recovery = first echo reply at the hub (ping -D stamp) minus the sync
# moment; also given from QEMU's start ("boot"). Between runs the NAT's
# conntrack is flushed, so R1's new boot gets a new mapping (as after a real
# reboot) and only R1's own initiation can bring the tunnel back.
#
# Clocks at boot (both behind the hub's last stamp):
#   behind      real time - BEHIND_S (3600): after the agent's build epoch,
#               so the agent trusts the clock before NTP
#   far-behind  build epoch - 1 day: the agent distrusts it until NTP
# The agent is built with SOURCE_DATE_EPOCH = BUILD_EPOCH (default: 00:00 UTC
# of yesterday; scripts/package.sh stamps packages with the commit time).
# Setups: agent (roam agent, keepalive off, heartbeat 5 s), ka25 (no agent,
# persistent keepalive 25 s), ka-off (no agent, no keepalive, idle R1), and
# with BASE_BIN=PATH (another static wgroam, e.g. built from main) also
# agent-base: the same as agent with that binary, in the same run.
# The sync comes SYNC_S plus a random 0..SYNC_JITTER_MS after wg0 is up: the
# kernel retries a dropped initiation every 5 s (+ up to 1/3 s), so a fixed
# delay that is a multiple of 5 s would always land just before a retry.
# Writes the table to stdout and target/bench/reboot-clock-latest.md; logs
# under target/bench/reboot-clock/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
RUNS=${1:-5}
CAP=${2:-60}
SYNC_S=${SYNC_S:-20}
SYNC_JITTER_MS=${SYNC_JITTER_MS:-5000}
BASE_BIN=${BASE_BIN:-}
BEHIND_S=${BEHIND_S:-3600}
VARIANTS=${VARIANTS:-behind far-behind}
SETUPS=${SETUPS:-agent${BASE_BIN:+ agent-base} ka25 ka-off}
BOOT_WAIT_S=${BOOT_WAIT_S:-180} # bound for a boot to reach "wg-configured"
BUILD_EPOCH=${BUILD_EPOCH:-$((($(date +%s) - 86400) / 86400 * 86400))}
QEMU=${QEMU:-qemu-system-x86_64}

OUT=$root/target/bench/reboot-clock
NS_HUB=wgrb-hub
NS_NAT=wgrb-nat
TAP=wgrbtap
WG=wgrb0
HUB4=203.0.113.1
NAT_OUT4=203.0.113.2
NAT_IN4=100.65.0.1
HUB_TUN=2001:db8:200::1
R1_TUN=2001:db8:200::2
PORT=51820

die() {
  echo "reboot-clock: $*" >&2
  exit 1
}
note() { echo "reboot-clock: $*" >&2; }
ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_for SECONDS CMD...: polls CMD every 50 ms; fails after SECONDS.
wait_for() {
  local end=$(($(ms) + $1 * 1000))
  shift
  until "$@"; do
    [ "$(ms)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

for t in "$QEMU" wireguard-go wg ip nft conntrack ping timeout; do
  command -v "$t" >/dev/null || die "missing tool '$t' (run scripts/install-deps.sh)"
done
[ "$(id -u)" = 0 ] || die "needs root (namespaces, TAP)"
for ns in "$NS_HUB" "$NS_NAT"; do
  ! ip netns list | grep -qw "$ns" || die "namespace $ns exists (another run? delete it first)"
done
[ ! -S "/run/wireguard/$WG.sock" ] || die "/run/wireguard/$WG.sock exists (another run?)"

# ------------------------------------------------------------- cleanup ---
QEMU_PID=
WGGO_PID=
HUB_PID=
PING_PID=
cleanup() {
  local p
  for p in $PING_PID $QEMU_PID $HUB_PID $WGGO_PID; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in $PING_PID $QEMU_PID $HUB_PID $WGGO_PID; do
    for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
  ip -n "$NS_NAT" link del "$TAP" 2>/dev/null || true
  ip netns del "$NS_HUB" 2>/dev/null || true
  ip netns del "$NS_NAT" 2>/dev/null || true
  rm -f "/run/wireguard/$WG.sock" "$OUT/ctl.in" "$OUT/ctl.out"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

mkdir -p "$OUT/logs" "$OUT/hub"
rm -f "$OUT"/logs/*.log

# --------------------------------------------------------------- build ---
export WGROAM_UCI_BIN=${WGROAM_UCI_BIN:-$root/target/tools/bin/uci}
[ -x "$WGROAM_UCI_BIN" ] || WGROAM_UCI_BIN=$(bash tests/tools/build-uci.sh | tail -n 1)
if [ -z "${WGROAM_BIN:-}" ]; then
  note "building the agent (musl, release, SOURCE_DATE_EPOCH=$BUILD_EPOCH)"
  SOURCE_DATE_EPOCH=$BUILD_EPOCH cargo build --release --quiet --target x86_64-unknown-linux-musl
  # A copy: tests/vm/build.sh would rebuild the default path with today's epoch.
  cp target/x86_64-unknown-linux-musl/release/wgroam "$OUT/wgroam"
  WGROAM_BIN=$OUT/wgroam
fi
WGROAM_BIN=$WGROAM_BIN bash tests/vm/build.sh roam-reboot-clock >/dev/null 2>"$OUT/vm-build.log" ||
  die "tests/vm/build.sh failed: $(tail -n 3 "$OUT/vm-build.log")"
KERNEL=target/vm/vmlinux
[ -e "$KERNEL" ] || KERNEL=target/vm/vmlinuz
# The baseline agent rides along as /usr/bin/wgroam-base in a second cpio
# archive appended to the initramfs (the kernel unpacks both).
INITRD=$OUT/initramfs.cpio.gz
cp target/vm/initramfs.cpio.gz "$INITRD"
if [ -n "$BASE_BIN" ]; then
  [ -x "$BASE_BIN" ] || die "BASE_BIN=$BASE_BIN is not executable"
  rm -rf "$OUT/base"
  mkdir -p "$OUT/base/usr/bin"
  cp "$BASE_BIN" "$OUT/base/usr/bin/wgroam-base"
  (cd "$OUT/base" && find . | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --quiet) | gzip >>"$INITRD"
fi

# ----------------------------------------------------------- the hub ---
ip netns add "$NS_HUB"
ip netns add "$NS_NAT"
ip netns exec "$NS_HUB" sh -c 'echo 0 >/proc/sys/net/ipv6/conf/default/accept_dad'
ip netns exec "$NS_NAT" sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward'
ip link add wan netns "$NS_HUB" type veth peer name wan netns "$NS_NAT"
ip -n "$NS_NAT" tuntap add dev "$TAP" mode tap
ip -n "$NS_HUB" -batch - <<EOF
link set lo up
addr add $HUB4/24 dev wan
link set wan up
EOF
ip -n "$NS_NAT" -batch - <<EOF
link set lo up
addr add $NAT_OUT4/24 dev wan
link set wan up
addr add $NAT_IN4/24 dev $TAP
link set $TAP up
EOF
# The port range needs a transport protocol match; ICMP gets a plain rule.
ip netns exec "$NS_NAT" nft -f - <<'EOF'
table ip wgrb_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" meta l4proto { tcp, udp } masquerade to :40000-40999 random
    oifname "wan" masquerade random
  }
}
EOF

keys=$OUT/keys
mkdir -p "$keys"
chmod 700 "$keys"
for k in hub r1; do
  (umask 077 && wg genkey >"$keys/$k.key")
  wg pubkey <"$keys/$k.key" >"$keys/$k.pub"
done
HUB_PUB=$(cat "$keys/hub.pub")
R1_PUB=$(cat "$keys/r1.pub")

ip netns exec "$NS_HUB" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=verbose wireguard-go "$WG" \
  </dev/null >"$OUT/wireguard-go.log" 2>&1 &
WGGO_PID=$!
wait_for 5 test -S "/run/wireguard/$WG.sock" || die "wireguard-go did not come up: $(tail -n 3 "$OUT/wireguard-go.log")"
ip netns exec "$NS_HUB" wg set "$WG" listen-port "$PORT" private-key "$keys/hub.key" \
  peer "$R1_PUB" allowed-ips "$R1_TUN/128,2001:db8:200:1::/64"
ip -n "$NS_HUB" -batch - <<EOF
addr add $HUB_TUN/64 dev $WG nodad
link set $WG up
route add 2001:db8:200:1::/64 dev $WG
EOF

# The hub agent, configured as tests/e2e/agent.sh agent_hub_setup does.
hd=$OUT/hub
rm -rf "$hd"
mkdir -p "$hd/etc" "$hd/save" "$hd/run"
cat >"$hd/etc/network" <<EOF
config interface '$WG'
	option proto 'wireguard'
	option private_key '(in $keys/hub.key)'
	option listen_port '$PORT'
	list addresses '$HUB_TUN/64'

config wireguard_$WG 'r1'
	option description 'travel router'
	option public_key '$R1_PUB'
	list allowed_ips '$R1_TUN/128'
	list allowed_ips '2001:db8:200:1::/64'
	option route_allowed_ips '1'
EOF
cat >"$hd/wgroam.conf" <<EOF
config agent 'agent'
	option role 'hub'
	option state_dir '$hd/run'
	option state_file '$hd/state.json'

config interface '$WG'
	option capture_device 'wan'
EOF
ip netns exec "$NS_HUB" "$WGROAM_BIN" run --config "$hd/wgroam.conf" --stderr \
  --uci-confdir "$hd/etc" --uci-savedir "$hd/save" </dev/null >"$OUT/hub-agent.log" 2>&1 &
HUB_PID=$!
wait_for 5 test -s "$hd/run/status.json" || die "hub agent wrote no status: $(tail -n 3 "$OUT/hub-agent.log")"

# ----------------------------------------------------------------- R1 ---
LOG=
# boot NAME SETUP RTC_BASE: starts R1 (serial console in $OUT/logs/NAME.log).
boot() {
  LOG=$OUT/logs/$1.log
  rm -f "$OUT/ctl.in" "$OUT/ctl.out"
  mkfifo "$OUT/ctl.in" "$OUT/ctl.out"
  ip netns exec "$NS_NAT" conntrack -F >/dev/null 2>&1 || true
  local mode=$2 extra=
  if [ "$2" = agent-base ]; then
    mode=agent
    extra=" wgrb.bin=wgroam-base"
  fi
  BOOT_MS=$(ms)
  ip netns exec "$NS_NAT" timeout --kill-after=5 $((BOOT_WAIT_S + SYNC_S + CAP + 60)) "$QEMU" \
    -nographic -no-reboot -m 160 -accel tcg -cpu max \
    -kernel "$KERNEL" -initrd "$INITRD" \
    -append "console=ttyS0 quiet panic=-1 wgrb.mode=$mode$extra wgrb.key=$(cat "$keys/r1.key") wgrb.hub=$HUB_PUB" \
    -rtc "base=$3" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -serial "file:$LOG" -serial "pipe:$OUT/ctl" -monitor none \
    -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no" \
    -device virtio-net-pci,netdev=n0,romfile= </dev/null >"$LOG.qemu" 2>&1 &
  QEMU_PID=$!
}
log_has() { [ -f "$LOG" ] && grep -aq "$1" "$LOG"; }
qemu_alive() { kill -0 "$QEMU_PID" 2>/dev/null; }
r1_stop() { # r1_stop: the guest's state into the log, then QEMU is stopped
  if qemu_alive; then
    echo dump >"$OUT/ctl.in"
    wait_for 20 log_has 'wgrb: dump end' || note "no dump from the guest"
    kill -TERM "$QEMU_PID" 2>/dev/null || true
    wait_for 10 sh -c "! kill -0 $QEMU_PID 2>/dev/null" || kill -KILL "$QEMU_PID" 2>/dev/null || true
  fi
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
  ip netns exec "$NS_HUB" "$WGROAM_BIN" status --state-dir "$hd/run" >"$LOG.hub-status" 2>&1 || true
}
# first_reply SECONDS: pings R1's tunnel address from the hub every 100 ms
# for at most SECONDS; sets REPLY_MS to the epoch ms of the first reply (ping's
# own stamp), empty if none came.
first_reply() {
  ip netns exec "$NS_HUB" ping -6 -n -D -i 0.1 -W 1 -w "$1" "$R1_TUN" >"$LOG.ping" 2>&1 &
  PING_PID=$!
  wait_for $(($1 + 2)) sh -c "grep -q 'bytes from' '$LOG.ping' 2>/dev/null || ! kill -0 $PING_PID 2>/dev/null" || true
  kill "$PING_PID" 2>/dev/null || true
  wait "$PING_PID" 2>/dev/null || true
  PING_PID=
  REPLY_MS=$(sed -n 's/^\[\([0-9]*\)\.\([0-9]\{3\}\).*bytes from.*/\1\2/p' "$LOG.ping" | head -n 1)
}
rtc_behind() { # rtc_behind VARIANT: -rtc base for this boot
  case "$1" in
  behind) date -u -d "@$(($(date +%s) - BEHIND_S))" +%Y-%m-%dT%H:%M:%S ;;
  far-behind) date -u -d "@$((BUILD_EPOCH - 86400))" +%Y-%m-%dT%H:%M:%S ;;
  *) die "unknown variant $1" ;;
  esac
}

# Before the reboot: R1 with the right clock handshakes; the hub keeps its stamp.
note "first boot with the right clock (the hub's last stamp)"
boot before ka25 utc
wait_for "$BOOT_WAIT_S" log_has 'wgrb: wg-configured' || die "first boot: no wg-configured; see $LOG"
first_reply "$CAP"
[ -n "$REPLY_MS" ] || die "first boot: no tunnel within ${CAP}s; see $LOG and $OUT/hub-agent.log"
r1_stop

# run_one VARIANT SETUP N: sets R_SYNC and R_BOOT, ms from the sync and from
# QEMU's start to recovery (-1: never; -2: the guest did not come up).
run_one() {
  local base t_cfg t_sync t_rep delay
  base=$(rtc_behind "$1")
  boot "$1-$2-$3" "$2" "$base"
  if ! wait_for "$BOOT_WAIT_S" log_has 'wgrb: wg-configured'; then
    note "$1/$2/$3: no wg-configured within ${BOOT_WAIT_S}s; see $LOG"
    r1_stop
    R_SYNC=-2
    R_BOOT=-2
    return
  fi
  t_cfg=$(ms)
  delay=$((SYNC_S * 1000 + (RANDOM * 32768 + RANDOM) % (SYNC_JITTER_MS + 1)))
  sleep "$(awk -v t="$((t_cfg + delay - $(ms)))" 'BEGIN { printf "%.3f", (t > 0 ? t : 0) / 1000 }')"
  t_sync=$(ms)
  echo "sync $((t_sync / 1000))" >"$OUT/ctl.in"
  first_reply "$CAP"
  t_rep=$REPLY_MS
  r1_stop
  R_SYNC=-1
  R_BOOT=-1
  if [ -n "$t_rep" ]; then
    R_SYNC=$((t_rep - t_sync))
    R_BOOT=$((t_rep - BOOT_MS))
  fi
  note "$1/$2/$3: rtc base $base, wg configured $((t_cfg - BOOT_MS)) ms after start, sync after $delay ms," \
    "$([ -n "$t_rep" ] && echo "reply $R_SYNC ms after sync" || echo "no reply within ${CAP}s")"
}

# stats: "median / max" of ms values (one per line); negative = never.
stats() {
  sed 's/^-.*/999999999/' | sort -n | awk '
    function f(x) { return x >= 999999999 ? "never" : sprintf("%.1f s", x / 1000) }
    { v[NR] = $1 }
    END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2 + 1] >= 999999999 ? v[NR / 2 + 1] : (v[NR / 2] + v[NR / 2 + 1]) / 2)
      printf "%s / %s", f(m), f(v[NR])
    }'
}

declare -A sync_v boot_v
t_start=$(ms)
for n in $(seq "$RUNS"); do
  for v in $VARIANTS; do
    for su in $SETUPS; do
      run_one "$v" "$su" "$n"
      sync_v[$v/$su]+="$R_SYNC "
      boot_v[$v/$su]+="$R_BOOT "
    done
  done
done
elapsed=$((($(ms) - t_start) / 1000))

{
  echo "R1 reboot without RTC: tunnel back (hub -> R1 echo answered), median / max of $RUNS runs, cap ${CAP} s after sync"
  echo
  echo "| clock at boot | setup | after NTP sync | after power-on | runs recovered | per run, s after sync |"
  echo "|---|---|---|---|---|---|"
  for v in $VARIANTS; do
    case $v in
    behind) vdesc="${BEHIND_S} s behind (after build epoch)" ;;
    far-behind) vdesc="build epoch - 1 day" ;;
    esac
    for su in $SETUPS; do
      case $su in
      agent) sdesc="wgroam roam agent" ;;
      agent-base) sdesc="wgroam roam agent, BASE_BIN" ;;
      ka25) sdesc="keepalive 25 s" ;;
      ka-off) sdesc="keepalive off" ;;
      esac
      s=$(tr ' ' '\n' <<<"${sync_v[$v/$su]}" | grep -v '^$' | stats)
      b=$(tr ' ' '\n' <<<"${boot_v[$v/$su]}" | grep -v '^$' | stats)
      ok=$(tr ' ' '\n' <<<"${sync_v[$v/$su]}" | grep -c '^[0-9]' || true)
      each=$(tr ' ' '\n' <<<"${sync_v[$v/$su]}" | grep -v '^$' |
        awk '{ printf "%s%s", (NR > 1 ? " " : ""), ($1 < 0 ? "-" : sprintf("%.1f", $1 / 1000)) }')
      echo "| $vdesc | $sdesc | $s | $b | $ok/$RUNS | $each |"
    done
  done
  echo
  echo "Sync ${SYNC_S} s + random 0..${SYNC_JITTER_MS} ms after R1's wg0 was configured;"
  [ -z "$BASE_BIN" ] || echo "BASE_BIN: $BASE_BIN ($(sha256sum <"$BASE_BIN" | cut -c1-12));"
  echo "agent built from $(git -C "$root" describe --always --dirty); build epoch $BUILD_EPOCH ($(date -u -d "@$BUILD_EPOCH" '+%F %T') UTC);"
  echo "bench ${elapsed} s; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
  echo "kernel $(uname -r), load average at end $(cut -d' ' -f1-3 /proc/loadavg); agent $("$WGROAM_BIN" --version 2>/dev/null)"
} | tee "$root/target/bench/reboot-clock-latest.md"
