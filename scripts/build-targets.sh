#!/usr/bin/env bash
# Builds static musl wgroam binaries for the router targets on plain Debian 12
# (no containers) and prints their sizes; with --test, runs the library's unit
# tests for each target under qemu-user instead.
#
#   scripts/build-targets.sh [--setup] [--test [--no-run]] [--size LIST] [--dist DIR] [TARGET...]
#
# TARGET is a Rust triple, a short name (mips mipsel armv7 arm aarch64 x86_64)
# or an OpenWrt architecture (mips_24kc mipsel_24kc arm_cortex-a7_neon-vfpv4
# arm_cortex-a9 aarch64_cortex-a53 x86_64); default: all six targets.
#
#   --setup      install what the builds need and exit: rust-src, the rustup
#                musl std for x86_64/aarch64, and zig + cargo-zigbuild (pinned,
#                from PyPI) in a venv under ~/.cache/wgroam (WGROAM_ZIG_VENV).
#   --test       `cargo test --lib` per target; non-x86_64 under
#                qemu-<arch>-static (Debian's qemu-user-static); built with
#                opt-level 1 (WGROAM_TEST_OPT_LEVEL) and debug assertions,
#                without debuginfo (WGROAM_TEST_DEBUG, cargo's profile.debug
#                values; 0 builds ~30% faster than cargo's default 2), in
#                its own target dir target/qemu-user (CARGO_TARGET_DIR wins):
#                cargo locks a target dir's host profile directory for the
#                whole build, so the release and host debug builds (e2e 40,
#                53, 54, 60) need not wait for these.
#   --no-run     with --test: build the test binaries, do not run them
#                (scripts/prebuild.sh builds them ahead this way; a later
#                --test with the same targets finds them fresh).
#   --size LIST  which size measures to apply to release builds, comma-separated
#                (default: "default"; "none" is the plain Cargo.toml profile):
#                  build-std   rebuild std with the profile (needs rust-src)
#                  ofs         std's optimize_for_size feature (implies build-std)
#                  loc         -Zlocation-detail=none (no file:line in panics)
#                  abort       -Cpanic=immediate-abort (no panic machinery;
#                              implies build-std)
#                  fmt-shallow -Zfmt-debug=shallow (derived Debug prints type
#                              names only; not in the default: it buys
#                              nothing now and silently changes {:?})
#                  fmt-none    -Zfmt-debug=none ({:?} prints nothing: UNSOUND
#                              here, error messages use {:?}; bench only)
#                  static      -Crelocation-model=static (no PIE)
#                  nounwind    -Cforce-unwind-tables=no (no .eh_frame; only
#                              sound with abort: nothing unwinds)
#                  strip-all   strip the copy in DIR with rust-objcopy
#                              --strip-all: also the non-alloc sections the
#                              linker's -s keeps (MIPS .pdr, .comment)
#                  default     = build-std,ofs,loc,abort,static,nounwind,
#                                strip-all
#   --dist DIR   where the binaries are copied as wgroam-TRIPLE (default
#                target/dist).
#
# Release builds go to the target dir target/router (CARGO_TARGET_DIR wins),
# not target/: they run with RUSTC_BOOTSTRAP=1, which build scripts such as
# proc-macro2's watch, so sharing target/release's host crates with the plain
# `cargo build --release --target x86_64-unknown-linux-musl` of scripts/test.sh,
# tests/vm/build.sh and bench/ made each rebuild them after the other.
#
# How each target builds (flags per target live in .cargo/config.toml):
#   x86_64/aarch64  rustup's musl std, or -Zbuild-std for the size measures;
#                   linked by the host gcc / rust-lld.
#   armv7/arm       -Zbuild-std (no rustup std here); linked by zig cc.
#   mips/mipsel     tier 3: -Zbuild-std; soft-float o32 mips32r2 (OpenWrt's
#                   24kc ABI); linked by zig cc.
# Unstable flags are used on the stable toolchain via RUSTC_BOOTSTRAP=1.
set -euo pipefail

ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

ALL_TARGETS=(
  mips-unknown-linux-musl
  mipsel-unknown-linux-musl
  armv7-unknown-linux-musleabihf
  arm-unknown-linux-musleabi
  aarch64-unknown-linux-musl
  x86_64-unknown-linux-musl
)

die() {
  echo "build-targets: $*" >&2
  exit 1
}

triple_of() {
  case "$1" in
  mips | mips_24kc | mips-unknown-linux-musl) echo mips-unknown-linux-musl ;;
  mipsel | mipsel_24kc | mipsel-unknown-linux-musl) echo mipsel-unknown-linux-musl ;;
  armv7 | arm_cortex-a7_neon-vfpv4 | armv7-unknown-linux-musleabihf) echo armv7-unknown-linux-musleabihf ;;
  arm | arm_cortex-a9 | arm-unknown-linux-musleabi) echo arm-unknown-linux-musleabi ;;
  aarch64 | aarch64_cortex-a53 | aarch64-unknown-linux-musl) echo aarch64-unknown-linux-musl ;;
  x86_64 | x86_64-unknown-linux-musl) echo x86_64-unknown-linux-musl ;;
  *) return 1 ;;
  esac
}

# The OpenWrt package architecture a triple's binary is shipped for.
openwrt_arch_of() {
  case "$1" in
  mips-unknown-linux-musl) echo mips_24kc ;;
  mipsel-unknown-linux-musl) echo mipsel_24kc ;;
  armv7-unknown-linux-musleabihf) echo arm_cortex-a7_neon-vfpv4 ;;
  arm-unknown-linux-musleabi) echo arm_cortex-a9 ;;
  aarch64-unknown-linux-musl) echo aarch64_cortex-a53 ;;
  x86_64-unknown-linux-musl) echo x86_64 ;;
  esac
}

qemu_of() {
  case "$1" in
  mips-unknown-linux-musl) echo qemu-mips-static ;;
  mipsel-unknown-linux-musl) echo qemu-mipsel-static ;;
  armv7-* | arm-*) echo qemu-arm-static ;;
  aarch64-*) echo qemu-aarch64-static ;;
  esac
}

# Targets whose std comes from rustup (everything else needs -Zbuild-std).
has_rustup_std() {
  case "$1" in x86_64-unknown-linux-musl | aarch64-unknown-linux-musl) return 0 ;; esac
  return 1
}

# Targets linked by zig cc through cargo-zigbuild.
uses_zig() {
  case "$1" in arm* | mips*) return 0 ;; esac
  return 1
}

zig_venv() {
  echo "${WGROAM_ZIG_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wgroam/zig-$ZIGLANG_VERSION-zigbuild-$CARGO_ZIGBUILD_VERSION}"
}

setup() {
  rustup component list --installed 2>/dev/null | grep -q '^rust-src' ||
    rustup component add rust-src
  local t
  for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
    rustup target list --installed 2>/dev/null | grep -qx "$t" || rustup target add "$t"
  done
  local venv
  venv=$(zig_venv)
  if [ ! -x "$venv/bin/cargo-zigbuild" ] || ! "$venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
    echo "build-targets: installing ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION into $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check \
      "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  fi
}

need_zig() {
  local venv
  venv=$(zig_venv)
  [ -x "$venv/bin/cargo-zigbuild" ] ||
    die "cargo-zigbuild missing in $venv; run scripts/build-targets.sh --setup"
  # cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH.
  export PATH="$venv/bin:$PATH"
}

rust_objcopy() {
  local f
  f="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/rust-objcopy"
  [ -x "$f" ] || die "$f missing (it ships with rustc)"
  echo "$f"
}

need_rust_src() {
  [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library" ] ||
    die "rust-src missing; run scripts/build-targets.sh --setup"
}

# Sets the arrays CARGO_ARGS and RUST_FLAGS for a release build of $1 with the
# size measures in $2.
size_args() {
  local t=$1 list=$2 m
  local build_std=0 ofs=0 abort=0
  CARGO_ARGS=()
  RUST_FLAGS=()
  STRIP_ALL=0
  [ "$list" = default ] && list=build-std,ofs,loc,abort,static,nounwind,strip-all
  [ "$list" = none ] && list=
  has_rustup_std "$t" || build_std=1
  local IFS=,
  for m in $list; do
    case "$m" in
    build-std) build_std=1 ;;
    ofs) build_std=1 ofs=1 ;;
    loc) RUST_FLAGS+=(-Zlocation-detail=none) ;;
    abort) build_std=1 abort=1 ;;
    fmt-shallow) RUST_FLAGS+=(-Zfmt-debug=shallow) ;;
    fmt-none) RUST_FLAGS+=(-Zfmt-debug=none) ;;
    static) RUST_FLAGS+=(-Crelocation-model=static) ;;
    nounwind) RUST_FLAGS+=(-Cforce-unwind-tables=no) ;;
    strip-all) STRIP_ALL=1 ;;
    *) die "unknown size measure '$m' (see --help)" ;;
    esac
  done
  if [ "$abort" = 1 ]; then
    RUST_FLAGS+=(-Zunstable-options -Cpanic=immediate-abort)
  fi
  if [ "$build_std" = 1 ]; then
    CARGO_ARGS+=('-Zbuild-std=std,panic_abort')
    [ "$ofs" = 0 ] || CARGO_ARGS+=(-Zbuild-std-features=optimize_for_size)
  fi
}

# "['-Za', '-Cb']" for cargo's --config (merged with .cargo/config.toml).
toml_list() {
  local out='' f
  for f in "$@"; do out+="${out:+, }'$f'"; done
  echo "[$out]"
}

cargo_for() {
  if uses_zig "$1"; then
    echo cargo-zigbuild
  else
    echo cargo
  fi
}

build_one() {
  local t=$1 sizes=$2 dist=$3
  size_args "$t" "$sizes"
  local args=(--release --locked --target "$t" "${CARGO_ARGS[@]}")
  [ "${#RUST_FLAGS[@]}" -eq 0 ] ||
    args+=(--config "target.$t.rustflags=$(toml_list "${RUST_FLAGS[@]}")")
  [ "${#CARGO_ARGS[@]}" -eq 0 ] || need_rust_src
  uses_zig "$t" && need_zig
  local sub=build
  [ "$(cargo_for "$t")" = cargo-zigbuild ] && sub=zigbuild
  echo "build-targets: $t: $(cargo_for "$t") $sub ${args[*]}"
  local start=$SECONDS
  local tdir=${CARGO_TARGET_DIR:-$root/target/router}
  CARGO_TARGET_DIR=$tdir RUSTC_BOOTSTRAP=1 "$(cargo_for "$t")" "$sub" "${args[@]}"
  mkdir -p "$dist"
  cp "$tdir/$t/release/wgroam" "$dist/wgroam-$t"
  if [ "$STRIP_ALL" = 1 ]; then
    # rust-objcopy (llvm-objcopy) ships with rustc and reads every target;
    # it loads the toolchain's libLLVM from the sysroot's lib/.
    LD_LIBRARY_PATH="$(rustc --print sysroot)/lib" "$(rust_objcopy)" --strip-all "$dist/wgroam-$t"
  fi
  TIMES[$t]=$((SECONDS - start))
}

test_one() {
  local t=$1
  local args=(--lib --locked --target "$t")
  has_rustup_std "$t" || {
    need_rust_src
    args+=(-Zbuild-std)
  }
  uses_zig "$t" && need_zig
  local runner_var
  runner_var="CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_RUNNER"
  local runner=
  if [ "$t" != x86_64-unknown-linux-musl ]; then
    runner=$(qemu_of "$t")
    command -v "$runner" >/dev/null ||
      die "$runner missing (Debian package qemu-user-static; scripts/install-deps.sh)"
  fi
  local filters=()
  if [ "$t" = mips-unknown-linux-musl ]; then
    # qemu-user 7.2 mis-emulates netlink on big-endian MIPS: the kernel's
    # answers come back garbled. Tests that open netlink carry "netlink" in
    # their name and only run on the other targets (and on real hardware).
    echo "build-targets: $t: skipping tests named *netlink*: qemu-user 7.2 mis-emulates netlink on big-endian MIPS"
    filters=(--skip netlink)
  fi
  if [ -n "$runner" ]; then
    # Root tests that enter network namespaces (setns on a thread) and open
    # packet sockets there are not emulated faithfully by qemu-user; they run
    # natively on x86_64 (cargo test in scripts/test.sh) and on hardware.
    echo "build-targets: $t: skipping tests named root_*: network namespaces under qemu-user"
    filters+=(--skip root_)
    # One test at a time under the emulator: a test that forks a child
    # (a stand-in ubus/uci script) while other test threads run was seen to
    # hang for good under qemu-user (ubus::tests::passes_arguments_and_parses_replies
    # on mips, 2026-12-06); natively they run in parallel.
    filters+=(--test-threads=1)
  fi
  local sub=test
  [ "$NO_RUN" = 0 ] || args+=(--no-run)
  echo "build-targets: $t: $(cargo_for "$t") $sub ${args[*]}${runner:+ (runner $runner)}"
  local start=$SECONDS
  # opt-level 1 (debug assertions and overflow checks stay on): the suite
  # runs ~10x faster under the emulator and the build costs about the same.
  # No debuginfo: it only feeds debuggers and backtraces (a failing test still
  # prints its assertion and panic message); it made the build ~30% slower
  # (the mipsel test binary was 96 MB).
  local envs=(RUSTC_BOOTSTRAP=1 "CARGO_PROFILE_TEST_OPT_LEVEL=${WGROAM_TEST_OPT_LEVEL:-1}"
    "CARGO_PROFILE_TEST_DEBUG=${WGROAM_TEST_DEBUG:-0}"
    "CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/qemu-user}")
  [ -z "$runner" ] || envs+=("$runner_var=$runner")
  if [ "$NO_RUN" = 1 ]; then
    env "${envs[@]}" "$(cargo_for "$t")" "$sub" "${args[@]}"
  else
    env "${envs[@]}" "$(cargo_for "$t")" "$sub" "${args[@]}" -- "${filters[@]}"
  fi
  TIMES[$t]=$((SECONDS - start))
}

size_table() {
  local dist=$1
  shift
  printf '%-32s %-26s %10s %10s %8s\n' target openwrt-arch stripped gzip-9 seconds
  local t f
  for t in "$@"; do
    f=$dist/wgroam-$t
    printf '%-32s %-26s %10d %10d %8s\n' "$t" "$(openwrt_arch_of "$t")" \
      "$(stat -c %s "$f")" "$(gzip -9 -n -c "$f" | wc -c)" "${TIMES[$t]:--}"
  done
}

mode=build sizes=default dist=target/dist NO_RUN=0
targets=()
while [ "$#" -gt 0 ]; do
  case "$1" in
  --setup) mode=setup ;;
  --test) mode='test' ;;
  --no-run) NO_RUN=1 ;;
  --size)
    [ "$#" -ge 2 ] || die "--size needs a list"
    sizes=$2
    shift
    ;;
  --dist)
    [ "$#" -ge 2 ] || die "--dist needs a directory"
    dist=$2
    shift
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  -*) die "unknown option $1 (see --help)" ;;
  *)
    t=$(triple_of "$1") || die "unknown target '$1' (known: ${ALL_TARGETS[*]})"
    targets+=("$t")
    ;;
  esac
  shift
done
[ "${#targets[@]}" -gt 0 ] || targets=("${ALL_TARGETS[@]}")

declare -A TIMES=()
case "$mode" in
setup)
  setup
  echo "build-targets: setup ok"
  ;;
build)
  for t in "${targets[@]}"; do build_one "$t" "$sizes" "$dist"; done
  echo
  echo "build-targets: size measures: $sizes"
  size_table "$dist" "${targets[@]}"
  ;;
test)
  for t in "${targets[@]}"; do test_one "$t"; done
  if [ "$NO_RUN" = 1 ]; then
    for t in "${targets[@]}"; do echo "build-targets: $t: unit tests built, not run (${TIMES[$t]}s)"; done
  else
    for t in "${targets[@]}"; do echo "build-targets: $t: unit tests passed (${TIMES[$t]}s)"; done
  fi
  ;;
esac
