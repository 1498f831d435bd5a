#!/usr/bin/env bash
# The capture benchmark of bench/hub.sh on a router-class CPU: inside the
# kernel-WireGuard test VM (tests/vm) of ARCH, agent vs tcpdump in the same VM run.
#
#   bash bench/hub.sh --vm mipsel      # or: bash bench/hub-vm.sh mipsel
#
# mipsel: qemu-system-mipsel -M malta -cpu 24Kc under TCG, Debian 12's 4kc-malta
# kernel, the cross-built agent that ships to mipsel_24kc routers (WGROAM_BIN, default
# target/dist/wgroam-mipsel-unknown-linux-musl from
# `scripts/build-targets.sh --dist target/dist mipsel`), tcpdump and libpcap from
# Debian's mipsel packages. Emulation time is not MIPS time: read the ratios (agent /
# tcpdump, same flood, same VM run), not the absolute numbers.
#
# The guest scenario is tests/vm/scenarios/bench-flood.sh; bench/flood.c is built for
# the guest with zig cc (scripts/build-targets.sh --setup installs it; or VM_CC). The
# hub's key is made here, so that the valid-mac1 garbage can be computed here too.
# Knobs: BENCH_PPS (20000), BENCH_LOW_PPS (1000), BENCH_FLOOD_S (10), BENCH_IDLE_S (30),
# VM_TIMEOUT (900). Output: Markdown tables, also in target/bench/hub-vm-ARCH.md.
# Needs no lab namespaces on the host (the VM has no NIC), so it can run beside them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
ARCH=${1:-mipsel}
export VM_ARCH=$ARCH
# shellcheck source=tests/vm/arch.sh
ROOT=$root . "$root/tests/vm/arch.sh"

PPS=${BENCH_PPS:-20000}
LOW_PPS=${BENCH_LOW_PPS:-1000}
FLOOD_S=${BENCH_FLOOD_S:-10}
IDLE_S=${BENCH_IDLE_S:-30}
OUT=$root/target/bench
EXTRA=$OUT/vm-$ARCH
REPORT=$OUT/hub-vm-$ARCH.md
die() { echo "bench-vm: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
for c in python3 wg "$QEMU"; do command -v "$c" >/dev/null || die "'$c' missing (scripts/install-deps.sh)"; done
if [ "$ARCH" != x86_64 ]; then
  export WGROAM_BIN=${WGROAM_BIN:-$root/target/dist/wgroam-$TRIPLE}
  [ -x "$WGROAM_BIN" ] || die "no agent at $WGROAM_BIN (scripts/build-targets.sh --dist target/dist $ARCH)"
fi

# The guest's flood generator: static, for the guest's ABI (for mipsel OpenWrt's
# mipsel_24kc: mips32r2, soft float).
CC_CMD=()
if [ -n "${VM_CC:-}" ]; then
  read -r -a CC_CMD <<<"$VM_CC"
else
  zig=$(find "${WGROAM_ZIG_VENV:-$HOME/.cache/wgroam}" -path '*ziglang/zig' -type f 2>/dev/null | head -n 1)
  [ -n "$zig" ] || die "no zig (scripts/build-targets.sh --setup) and no VM_CC"
  case "$ARCH" in
  mipsel) CC_CMD=("$zig" cc -target mipsel-linux-musleabi -mcpu=mips32r2 -msoft-float) ;;
  aarch64) CC_CMD=("$zig" cc -target aarch64-linux-musl) ;;
  x86_64) CC_CMD=("$zig" cc -target x86_64-linux-musl) ;;
  esac
fi
rm -rf "$EXTRA"
mkdir -p "$EXTRA"
"${CC_CMD[@]}" -O2 -static -s -Wall -o "$EXTRA/flood" "$here/flood.c" || die "cannot build bench/flood.c for $ARCH"
(umask 077 && wg genkey >"$EXTRA/r2.key")
python3 - "$(wg pubkey <"$EXTRA/r2.key")" "$EXTRA/mac1-garbage.bin" <<'PY'
import base64, hashlib, os, sys
pub = base64.b64decode(sys.argv[1])
key = hashlib.blake2s(b"mac1----" + pub).digest()
with open(sys.argv[2], "wb") as f:
    for _ in range(256):
        body = b"\x01\x00\x00\x00" + os.urandom(112)
        f.write(body + hashlib.blake2s(body, digest_size=16, key=key).digest() + bytes(16))
PY
cat >"$EXTRA/params" <<EOF
BENCH_PPS=$PPS
BENCH_LOW_PPS=$LOW_PPS
BENCH_FLOOD_S=$FLOOD_S
BENCH_IDLE_S=$IDLE_S
EOF

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s)
VM_EXTRA_DIR=$EXTRA VM_TIMEOUT=${VM_TIMEOUT:-900} bash "$root/tests/vm/run.sh" bench-flood >&2 ||
  echo "bench-vm: the scenario reported failures (see $VM_CACHE/logs/bench-flood.log)" >&2
LOG=$VM_CACHE/logs/bench-flood.log
grep -q '^BENCH flood' "$LOG" || die "no measurements in $LOG"

python3 - "$LOG" "$ARCH" "$LOAD_START $(cut -d' ' -f1-3 /proc/loadavg)" "$(($(date +%s) - t0))" "$PPS" "$LOW_PPS" <<'PY' | tee "$REPORT"
import sys
log, arch, load, secs, pps, low = sys.argv[1:7]
rows, machine, idle = [], {}, None
for line in open(log, errors="replace"):
    line = line.strip()
    if not line.startswith("BENCH "):
        continue
    w = line.split()
    kv = dict(x.split("=", 1) for x in w[2:] if "=" in x)
    if w[1] == "machine":
        machine = kv
    elif w[1] == "idle":
        idle = kv
    elif w[1] == "flood":
        rows.append(kv)
names = {
    "wgjunk": "initiation-shaped junk (bad mac1), 256 sources",
    "spoofed": "initiation-shaped junk, every packet from a new source",
    "mac1": "initiation-shaped garbage with a VALID mac1, every packet from a new source",
}
print(f"VM: {arch}, guest CPU {machine.get('cpu', '?').replace('_', ' ')}, kernel {machine.get('kernel', '?')}, "
      f"CPU from {machine.get('cpu_source', '?')}; agent {machine.get('agent', '?').replace('_', ' ')}; "
      f"host load average at start/end {load}; {secs} s for the whole VM run.")
print()
if idle:
    cpu = int(idle["cpu_us"]) / 1000
    wall = int(idle["wall_ms"]) / 1000
    print(f"Idle hub agent in the VM (1 peer, poll_ms 500, {wall:.0f} s): "
          f"{cpu * 60 / wall:.1f} ms CPU per minute (emulated), VmRSS {idle['rss_kib']} KiB.")
    print()
print("| traffic | pps target | achieved (sender / r2 wan rx) | capturing process | CPU ms | CPU share of the guest's core % | handled (dropped) | µs per handled packet | µs per arriving packet | VmRSS KiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
by = {}
for r in rows:
    cpu = int(r["cpu_us"]) / 1000
    wall = int(r["wall_ms"])
    rx = int(r["rx"])
    rxpps = rx * 1000 // max(wall, 1)
    h = int(r["handled"])
    per = f"{cpu * 1000 / h:.2f}" if h > 0 else "-"
    arr = f"{cpu * 1000 / rx:.3f}" if rx > 0 else "-"
    by[(r["who"], r["kind"], r["pps"])] = (cpu, h)
    print(f"| {names[r['kind']]} | {r['pps']} | {r['achieved']} / {rxpps} | {r['who']} | {cpu:.1f} | "
          f"{cpu / wall * 100:.1f} | {h} ({r['dropped']}) | {per} | {arr} | {r['rss_kib']} |")
print()
print("Ratios, same VM run (agent / tcpdump with the same flood):")
print()
print("| traffic | pps | agent CPU ms / tcpdump CPU ms | ratio | agent µs per handled packet / tcpdump's | ratio |")
print("|---|---|---|---|---|---|")
for kind, p in (("wgjunk", pps), ("spoofed", pps), ("mac1", pps), ("wgjunk", low)):
    a, t = by.get(("agent", kind, p)), by.get(("tcpdump", kind, p))
    if not a or not t:
        continue
    r = a[0] / t[0] if t[0] > 0 else float("inf")
    pa = a[0] * 1000 / a[1] if a[1] else 0
    pt = t[0] * 1000 / t[1] if t[1] else 0
    pr = pa / pt if pt > 0 else float("inf")
    print(f"| {kind} | {p} | {a[0]:.1f} / {t[0]:.1f} | {r:.2f} | {pa:.2f} / {pt:.2f} | {pr:.1f} |")
PY
echo "bench-vm: report in $REPORT" >&2
