# vm-needs: net
# Guest side of bench/reboot-clock.sh: R1 (the travel router) booting with its
# clock behind. Not a standalone test: the bench boots it with a virtio NIC
# on a TAP in its NAT namespace, the clock set by `-rtc base=` and these
# kernel command line words:
#   wgrb.mode=agent|ka25|kaoff   roam agent (keepalive off), or no agent with
#                                persistent keepalive 25 s, or none at all
#   wgrb.key=R1_PRIVATE  wgrb.hub=HUB_PUBLIC
#   wgrb.bin=NAME                the agent binary (default wgroam)
# It configures the uplink (eth0 100.65.0.2/24 via 100.65.0.1) and kernel
# WireGuard wg0 (2001:db8:200::2/64, hub 203.0.113.1:51820, random listen
# port as OpenWrt without listen_port), says "wgrb: wg-configured", and then
# obeys lines on its second serial port (ttyS1):
#   sync SECONDS   "NTP": set the clock to SECONDS since the epoch and do
#                  what OpenWrt's ntp hotplug does (flag file, SIGUSR2)
#   dump           print wg0's state and the agent's status
# shellcheck shell=sh

arg() {
  read -r cl_ </proc/cmdline
  for w_ in $cl_; do
    case $w_ in "wgrb.$1="*)
      echo "${w_#*=}"
      return 0
      ;;
    esac
  done
}
mode=$(arg mode)
if [ -z "$mode" ]; then
  echo "SKIP: guest of bench/reboot-clock.sh (needs its NIC and command line)"
  exit 0
fi
say() {
  read -r u_ _ </proc/uptime
  echo "wgrb: $* (uptime ${u_}s, clock $(date -u +%s))"
}
say "boot, mode $mode, clock $(date -u '+%F %T')"

umask 077
arg key >/tmp/r1.key
umask 022
ka=
[ "$mode" = ka25 ] && ka="persistent-keepalive 25"
ip link set eth0 up || exit 1
ip -batch - <<'EOF' || exit 1
addr add 100.65.0.2/24 dev eth0
route add default via 100.65.0.1
link add wg0 type wireguard
EOF
# shellcheck disable=SC2086 # $ka is two words or none
wg set wg0 private-key /tmp/r1.key peer "$(arg hub)" endpoint 203.0.113.1:51820 \
  allowed-ips ::/0 $ka || exit 1
ip -batch - <<'EOF' || exit 1
addr add 2001:db8:200::2/64 dev wg0 nodad
link set wg0 up
EOF
say "wg-configured"

agent=
if [ "$mode" = agent ]; then
  mkdir -p /run/wgroam
  cat >/etc/wgroam.conf <<EOF
config agent 'agent'
	option role 'roam'
	option uci '0'
	option state_dir '/run/wgroam'
	option state_file '/run/wgroam/state.json'

config interface 'wg0'
	option hub_key '$(arg hub)'
	list endpoint '203.0.113.1:51820'
	option prefix '2001:db8:200:1::/64'
	option tunnel_addr '2001:db8:200::2'
	option hub_tunnel_addr '2001:db8:200::1'
	option delegate 'off'
EOF
  bin=$(arg bin)
  "${bin:-wgroam}" run --config /etc/wgroam.conf --stderr &
  agent=$!
  say "agent started, pid $agent"
fi

stty -F /dev/ttyS1 raw -echo
while read -r cmd val </dev/ttyS1; do
  case $cmd in
  sync)
    date -u -s "@$val" >/dev/null
    if [ -n "$agent" ]; then
      # /etc/hotplug.d/ntp/95-wgroam
      : >/run/wgroam/ntp-synced
      kill -USR2 "$agent"
    fi
    say "synced"
    ;;
  dump)
    wg show wg0
    [ -n "$agent" ] && "${bin:-wgroam}" status --state-dir /run/wgroam
    say "dump end"
    ;;
  esac
done
