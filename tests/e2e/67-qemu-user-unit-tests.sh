#!/usr/bin/env bash
# Issue 6: the library's unit tests for the router targets the other tests do not
# already cover, each under qemu-user (Debian's qemu-user-static): big-endian MIPS
# (mips_24kc: where byte-order bugs in packet and netlink parsing show up), 32-bit
# ARM with and without hard float, and aarch64. mipsel runs in 60-packages, x86_64
# natively in `cargo test`. scripts/build-targets.sh --test prints what it skips
# and why (root_* network-namespace tests everywhere under the emulator; *netlink*
# on big-endian MIPS, which qemu-user 7.2 mis-emulates).
#
# Cold (no target/ cache) each target builds std from source: a few minutes each.
# e2e-order: late (tests/e2e/run.sh)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

TARGETS=${QEMU_USER_TARGETS:-mips armv7 arm aarch64}
for t in qemu-mips-static qemu-arm-static qemu-aarch64-static; do
  command -v "$t" >/dev/null || {
    echo "67-qemu-user: $t missing; run scripts/install-deps.sh"
    exit 1
  }
done
# shellcheck disable=SC2086 # a list of target names
scripts/build-targets.sh --test $TARGETS
echo "PASS"
