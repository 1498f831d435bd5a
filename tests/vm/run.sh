#!/usr/bin/env bash
# Boots the kernel-WireGuard test VM with one scenario and reports its result.
#
#   [VM_ARCH=x86_64|aarch64|mipsel] tests/vm/run.sh SCENARIO
#                                 (tests/vm/scenarios/SCENARIO.sh)
#
# Builds the VM first (cached, see build.sh), boots it under TCG (no KVM),
# serial console to target/vm/[ARCH/]logs/SCENARIO.log, prints the guest's
# lines and exits 0 when the scenario passed, 1 otherwise. VM_TIMEOUT
# (seconds; default 180 on x86_64, 240 on aarch64 and mipsel) bounds the
# whole boot. VM_ARCH picks the guest (tests/vm/arch.sh): x86_64 (default,
# -cpu max), aarch64 (-M virt -cpu cortex-a53) or mipsel (-M malta -cpu 24Kc);
# the last two need the agent cross-built first (WGROAM_BIN, default
# target/dist/wgroam-TRIPLE from scripts/build-targets.sh --dist target/dist
# ARCH), as tests/e2e/53-vm-aarch64.sh and 54-vm-mipsel.sh do.
# Timing (2 cores, TCG, warm caches): one boot of hub-port-change takes about
# 10-20 s on each architecture (mipsel under TCG is no slower than x86_64).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/vm/arch.sh
. "$ROOT/tests/vm/arch.sh"
CACHE=$VM_CACHE
SCENARIO=${1:-}
TIMEOUT=${VM_TIMEOUT:-$VM_TIMEOUT_DEFAULT}

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

# QEMU runs in the background so that a signal to this script (e.g. a test
# runner's timeout) stops the VM too.
start=$(date +%s%N)
timeout --kill-after=5 "$TIMEOUT" "$QEMU" \
  -nographic -no-reboot "${QEMU_MACHINE[@]}" \
  -kernel "$KERNEL" -initrd "$CACHE/initramfs.cpio.gz" \
  -append "console=$CONSOLE quiet panic=-1" \
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

reason=
if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
  reason="timed out after ${TIMEOUT}s"
elif [ "$VM_ARCH" = x86_64 ]; then
  # isa-debug-exit: QEMU exits with (status<<1)|1 for the status the guest wrote.
  if [ $((qrc & 1)) -eq 1 ]; then
    status=$((qrc >> 1))
    [ "$status" -eq 0 ] || reason="scenario status $status"
  else
    reason="QEMU exited $qrc without a status (guest panic or power-off?)"
  fi
else
  # No exit device: the guest resets after its exit line (-no-reboot: QEMU
  # exits 0); the status is the one that line names.
  status=$(clean_log | sed -n 's/^vm: exit status=\([0-9]*\)$/\1/p' | tail -n 1)
  if [ "$qrc" -ne 0 ]; then
    reason="QEMU exited $qrc${status:+ (guest status $status)}"
  elif [ -z "$status" ]; then
    reason="QEMU exited without the guest's exit line (guest panic or reset?)"
  elif [ "$status" -ne 0 ]; then
    reason="scenario status $status"
  fi
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
  echo "vm: $SCENARIO FAILED on $VM_ARCH: $reason ($timing; log: $LOG)"
  exit 1
fi
echo "vm: $SCENARIO passed on $VM_ARCH ($timing)"
