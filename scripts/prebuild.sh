#!/usr/bin/env bash
# Builds ahead, in the background, what the e2e tests that run last build
# themselves, with exactly their commands and environment, so that their own
# builds find cargo's artifacts fresh. scripts/test.sh starts it (under
# `nice -n 19`) while the lab e2e tests run: those mostly wait on timers and
# leave the two cores idle. It proves nothing and replaces nothing: every
# test still runs its own build (a no-op when this one got there first; when
# it is still building the same thing, cargo's lock makes the test wait for
# it), so a failure here shows up again in the test that needs the build.
#
#   scripts/prebuild.sh
#
# Two streams in parallel (they take different cargo locks; see
# scripts/build-targets.sh --no-run):
#   A  e2e 40's crash-inject debug build, e2e 45's fuzz targets (and
#      cargo-fuzz, installed once per machine), the shipped release builds of
#      aarch64 (e2e 53) and mipsel (e2e 54 and 60);
#   B  the qemu-user unit-test builds: mipsel (e2e 60), mips, armv7, arm and
#      aarch64 (e2e 67), in target/qemu-user.
# Release binaries land in target/prebuild-dist (not target/dist, which the
# tests copy to themselves). One line per item with its seconds; full output
# in target/prebuild/A.log and B.log. Exit status 1 if an item failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"
logs=$root/target/prebuild
mkdir -p "$logs"

# item NAME COMMAND...: runs COMMAND, prints its time; returns its status.
item() {
  local name=$1 start=$SECONDS rc=0
  shift
  echo "prebuild: $name ... ($(date +%T))"
  "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    echo "prebuild: $name done ($((SECONDS - start)) s, $(date +%T))"
  else
    echo "prebuild: $name FAILED, exit $rc ($((SECONDS - start)) s; the test that needs it rebuilds and reports)"
  fi
  return "$rc"
}

stream_a() {
  local rc=0
  # tests/e2e/40-crash-safety.sh: build_crash_binary
  item crash-inject cargo build --quiet --features crash-inject || rc=1
  # tests/e2e/45-fuzz-short.sh
  item fuzz-targets env FUZZ_SANITIZER=none bash scripts/fuzz.sh --prepare || rc=1
  # tests/vm/cross.sh (e2e 53, 54) and tests/e2e/60-packages.sh
  item release-aarch64 scripts/build-targets.sh --dist target/prebuild-dist aarch64 || rc=1
  item release-mipsel scripts/build-targets.sh --dist target/prebuild-dist mipsel || rc=1
  return "$rc"
}

stream_b() {
  local rc=0 t
  # tests/e2e/60-packages.sh (mipsel), tests/e2e/67-qemu-user-unit-tests.sh
  for t in mipsel mips armv7 arm aarch64; do
    item "unit-tests-$t" scripts/build-targets.sh --test --no-run "$t" || rc=1
  done
  return "$rc"
}

start=$SECONDS
stream_a >"$logs/A.log" 2>&1 &
a=$!
stream_b >"$logs/B.log" 2>&1 &
b=$!
rc=0
wait "$a" || rc=1
wait "$b" || rc=1
grep -h '^prebuild:' "$logs/A.log" "$logs/B.log"
echo "prebuild: finished in $((SECONDS - start)) s, status $rc"
exit "$rc"
