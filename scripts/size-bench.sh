#!/usr/bin/env bash
# Size benchmark: what each size measure of scripts/build-targets.sh buys.
#
#   scripts/size-bench.sh [--crates] [TARGET]      (default TARGET: mips)
#
# Builds TARGET once per measure set, each adding one measure to the one
# before, and prints stripped and gzip -9 sizes with the change each step
# made. The .ipk/.apk hold the binary gzip'd/deflated, so gzip -9 is
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
  # "abort,fmt-shallow" and "abort,static" are each compared with "abort".
  case "$s" in *,fmt-shallow | *,static) base=build-std,ofs,loc,abort ;; esac
  printf '%-38s %10d %+9d %10d %+9d %6d\n' "$s" "${stripped[$s]}" \
    $((stripped[$s] - stripped[$base])) "${gz[$s]}" $((gz[$s] - gz[$base])) "${secs[$s]}"
  case "$s" in *,fmt-shallow | *,static) ;; *) prev=$s ;; esac
done

if [ "$crates" = 1 ]; then
  triple=$(basename "$f" | sed 's/^wgroam-//')
  # Unstripped build of the shipped set, for the symbol table.
  CARGO_PROFILE_RELEASE_STRIP=false scripts/build-targets.sh --dist "$out/symbols" "$target" >"$out.log" 2>&1
  bin=$out/symbols/wgroam-$triple
  printf '\nbiggest crates in %s (sum of symbol sizes, bytes):\n' "$triple"
  nm -S --size-sort -C "$bin" 2>/dev/null | awk '
    NF >= 4 {
      size = strtonum("0x" $2)
      name = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ /, "", name)
      sub(/^</, "", name); sub(/^&/, "", name)
      crate = name
      if (match(crate, /^[A-Za-z0-9_]+::/)) crate = substr(crate, 1, RLENGTH - 2)
      else crate = "(C/other: " (length(name) > 30 ? substr(name, 1, 30) "..." : name) ")"
      if (crate ~ /^\(C/) crate = "(libc, compiler-rt, unnamed)"
      sum[crate] += size; total += size
    }
    END {
      for (c in sum) printf "%10d  %s\n", sum[c], c
      printf "%10d  (total)\n", total
    }' | sort -rn | head -n 25
fi
