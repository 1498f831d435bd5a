#!/usr/bin/env bash
# Release check of issue 6: builds all six targets (scripts/build-targets.sh,
# shipped size measures), packages each as .ipk and .apk (scripts/package.sh)
# and checks every pair (tests/pkg/check-packages.sh).
#
#   tests/pkg/all-targets.sh [OUTDIR]       (default target/pkg-all)
#
# Cold, the six release builds take a while (see openwrt/README.md, Timings);
# CI covers x86_64 and mipsel packages in tests/e2e/60-packages.sh.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
out=${1:-$root/target/pkg-all}
dist=$out/dist
version=$(scripts/version.sh --check)

scripts/build-targets.sh --dist "$dist"

failed=0
rows=()
for pair in mips-unknown-linux-musl:mips_24kc mipsel-unknown-linux-musl:mipsel_24kc \
  armv7-unknown-linux-musleabihf:arm_cortex-a7_neon-vfpv4 arm-unknown-linux-musleabi:arm_cortex-a9 \
  aarch64-unknown-linux-musl:aarch64_cortex-a53 x86_64-unknown-linux-musl:x86_64; do
  triple=${pair%%:*}
  arch=${pair##*:}
  bin=$dist/wgroam-$triple
  scripts/package.sh "$bin" "$arch" "$version" "$out/$arch" >/dev/null
  ipk=$out/$arch/wgroam_${version}_$arch.ipk
  apk=$out/$arch/wgroam-$version.apk
  if result=$(tests/pkg/check-packages.sh "$ipk" "$apk" "$bin" 2>&1 | tail -n 1) &&
    [[ $result == *", 0 failed" ]]; then
    :
  else
    failed=$((failed + 1))
  fi
  rows+=("$(printf '%-26s %10d %10d %10d  %s' "$arch" "$(stat -c %s "$bin")" \
    "$(stat -c %s "$ipk")" "$(stat -c %s "$apk")" "$result")")
done
echo
printf '%-26s %10s %10s %10s  %s\n' arch stripped ipk apk checks
for r in "${rows[@]}"; do echo "$r"; done
echo "all-targets: $((6 - failed)) of 6 architectures packaged and checked"
[ "$failed" = 0 ]
