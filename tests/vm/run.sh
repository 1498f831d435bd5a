#!/usr/bin/env bash
# Boots the kernel-WireGuard test VM with one scenario and reports its result.
#
#   tests/vm/run.sh SCENARIO      (tests/vm/scenarios/SCENARIO.sh)
#
# Builds the VM first (cached, see build.sh), boots it under TCG (no KVM),
# serial console to target/vm/logs/SCENARIO.log, prints the guest's lines and
# exits 0 when the scenario passed, 1 otherwise. VM_TIMEOUT (seconds, default
# 180) bounds the whole boot.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE="$ROOT/target/vm"
SCENARIO=${1:-}
TIMEOUT=${VM_TIMEOUT:-180}
QEMU=${QEMU:-qemu-system-x86_64}

if [ -z "$SCENARIO" ] || [ "$#" -ne 1 ]; then
  names=()
  for f in "$ROOT"/tests/vm/scenarios/*.sh; do
    f=${f##*/}
    names+=("${f%.sh}")
  done
  echo "usage: tests/vm/run.sh SCENARIO (one of: ${names[*]})" >&2
  exit 1
fi
command -v "$QEMU" >/dev/null || { echo "vm: $QEMU not found (run scripts/install-deps.sh)" >&2; exit 1; }

"$ROOT/tests/vm/build.sh" "$SCENARIO" || { echo "vm: build failed" >&2; exit 1; }

KERNEL="$CACHE/vmlinux"
[ -e "$KERNEL" ] || KERNEL="$CACHE/vmlinuz"

mkdir -p "$CACHE/logs"
LOG="$CACHE/logs/$SCENARIO.log"
: >"$LOG"

# -cpu max: TCG then offers RDRAND, so the guest's RNG is ready at once
# (wg genkey). QEMU runs in the background so that a signal to this script
# (e.g. a test runner's timeout) stops the VM too.
start=$(date +%s%N)
timeout --kill-after=5 "$TIMEOUT" "$QEMU" \
  -nographic -no-reboot -m 256 -accel tcg -cpu max \
  -kernel "$KERNEL" -initrd "$CACHE/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet panic=-1" \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
  -serial "file:$LOG" -monitor none -nic none </dev/null &
qemu_pid=$!
trap 'kill -TERM "$qemu_pid" 2>/dev/null || true' EXIT
trap 'exit 1' INT TERM
wait "$qemu_pid" && qrc=0 || qrc=$?
trap - EXIT
elapsed_ms=$((($(date +%s%N) - start) / 1000000))

# The serial log without CRs and the firmware's terminal escapes.
clean_log() {
  tr -d '\r' <"$LOG" |
    sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[A-Za-z]//g' -e 's/^.*\(vm: init at \)/\1/'
}
# The guest's lines start at /init's first line; before it, only firmware and
# kernel noise.
clean_log | sed -n '/^vm: init at/,$p'

# isa-debug-exit: QEMU exits with (status<<1)|1 for the status the guest wrote.
reason=
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
  reason="timed out after ${TIMEOUT}s"
elif [ $((qrc & 1)) -eq 1 ]; then
  status=$((qrc >> 1))
  [ "$status" -eq 0 ] || reason="scenario status $status"
else
  reason="QEMU exited $qrc without a status (guest panic or power-off?)"
fi
if [ -z "$reason" ] && ! clean_log | grep -qx 'vm: exit status=0'; then
  reason="status 0 without the guest's exit line"
fi

boot=$(clean_log | sed -n 's/^vm: init at \([0-9.]*\)s uptime.*/\1/p')
begin=$(clean_log | sed -n 's/^vm: scenario begin at \([0-9.]*\)s uptime.*/\1/p')
end=$(clean_log | sed -n 's/^vm: scenario end at \([0-9.]*\)s uptime.*/\1/p')
scen=
if [ -n "$begin" ] && [ -n "$end" ]; then
  scen=$(awk -v a="$begin" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
fi
timing="total $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))s, boot to /init ${boot:-?}s, scenario ${scen:-?}s"

if [ -n "$reason" ]; then
  if [ -z "$boot" ]; then
    echo "vm: --- full serial log ($LOG) ---"
    clean_log | tail -n 60
  fi
  echo "vm: $SCENARIO FAILED: $reason ($timing; log: $LOG)"
  exit 1
fi
echo "vm: $SCENARIO passed ($timing)"
