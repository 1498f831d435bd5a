#!/usr/bin/env bash
# Size benchmark: what each size measure of scripts/build-targets.sh buys.
#
#   scripts/size-bench.sh [--crates] [TARGET]      (default TARGET: mips)
#
# Builds TARGET once per measure set, each adding one measure to the one
# before (fmt-shallow, not shipped, only to "...,abort"), and prints stripped
# and gzip -9 sizes with the change each step made; the last line is the
# shipped default. The .ipk/.apk hold the binary gzip'd/deflated, so gzip -9 is
# about what a package costs in flash and download. With --crates, also
# builds the shipped set unstripped and prints the biggest crates (sum of
# symbol sizes, from nm).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

crates=0 target=mips
while [ "$#" -gt 0 ]; do
  case "$1" in
  --crates) crates=1 ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) target=$1 ;;
  esac
  shift
done

# shellcheck disable=SC2054 # each element is a comma-separated list
steps=(
  none
  build-std
  build-std,ofs
  build-std,ofs,loc
  build-std,ofs,loc,abort
  build-std,ofs,loc,abort,fmt-shallow
  build-std,ofs,loc,abort,static
  build-std,ofs,loc,abort,static,nounwind
  build-std,ofs,loc,abort,static,nounwind,strip-all
)
out=$root/target/size-bench
rm -rf "$out"
declare -A stripped gz secs
for s in "${steps[@]}"; do
  start=$SECONDS
  scripts/build-targets.sh --size "$s" --dist "$out/$s" "$target" >"$out.log" 2>&1 ||
    {
      tail -n 20 "$out.log"
      exit 1
    }
  f=$(echo "$out/$s"/wgroam-*)
  stripped[$s]=$(stat -c %s "$f")
  gz[$s]=$(gzip -9 -n -c "$f" | wc -c)
  secs[$s]=$((SECONDS - start))
done

printf '\n%s: size per measure set (bytes; delta vs the line above)\n' "$(basename "$f" | sed 's/^wgroam-//')"
printf '%-38s %10s %9s %10s %9s %6s\n' measures stripped delta gzip-9 delta build-s
prev=
for s in "${steps[@]}"; do
  base=${prev:-$s}
  printf '%-38s %10d %+9d %10d %+9d %6d\n' "$s" "${stripped[$s]}" \
    $((stripped[$s] - stripped[$base])) "${gz[$s]}" $((gz[$s] - gz[$base])) "${secs[$s]}"
  # fmt-shallow (not shipped) is a side branch: the next line is compared
  # with the line before it again.
  case "$s" in *,fmt-shallow) ;; *) prev=$s ;; esac
done

if [ "$crates" = 1 ]; then
  triple=$(basename "$f" | sed 's/^wgroam-//')
  # Unstripped build of the shipped set, for the symbol table (the copy in
  # --dist is stripped by the strip-all measure; cargo's own is not).
  CARGO_PROFILE_RELEASE_STRIP=false scripts/build-targets.sh --dist "$out/symbols" "$target" >"$out.log" 2>&1
  bin=${CARGO_TARGET_DIR:-target/router}/$triple/release/wgroam
  printf '\nbiggest crates in %s (sum of symbol sizes, bytes):\n' "$triple"
  nm -S --size-sort -C "$bin" | python3 -c '
import re, sys
sums, total = {}, 0
for line in sys.stdin:
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 4:
        continue
    size, name = int(parts[1], 16), parts[3].lstrip("<&")
    m = re.match(r"([A-Za-z0-9_]+)::", name)
    crate = m.group(1) if m else "(libc, compiler-rt, unnamed)"
    sums[crate] = sums.get(crate, 0) + size
    total += size
for c, n in sorted(sums.items(), key=lambda x: -x[1])[:25]:
    print("%10d  %s" % (n, c))
print("%10d  (total)" % total)
'
fi
