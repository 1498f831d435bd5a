#!/usr/bin/env bash
# Builds OpenWrt's real `uci` command-line tool for the tests.
#
# The sources (libubox + uci) come vendored inside the crates.io package
# `libuci-sys`; cargo itself fetches that package through a throwaway project, so the
# only network this needs is crates.io (and nothing once cargo's cache holds it).
# The tool is linked statically against libuci/libubox, so target/tools/bin/uci runs
# from anywhere without LD_LIBRARY_PATH.
#
# Idempotent: when the tool is already built from the same version by this same
# script (a hash of it is kept), it only prints the path. Prints the tool's path as
# its last line.
#
# Environment: WGROAM_TOOLS_DIR overrides the install prefix (default
# <repo>/target/tools).
set -euo pipefail

CRATE=libuci-sys
VERSION=1.0.5

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
prefix="${WGROAM_TOOLS_DIR:-$repo/target/tools}"
tool="$prefix/bin/uci"
stamp="$prefix/.uci-build-stamp"
want_stamp="$CRATE-$VERSION $(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"

log() { echo "build-uci: $*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -x "$tool" && -f "$stamp" && "$(<"$stamp")" == "$want_stamp" ]]; then
  echo "$tool"
  exit 0
fi

for cmd in cargo cmake make cc tar; do
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found (run scripts/install-deps.sh)"
done

work="$prefix/build"
rm -rf "$work"
mkdir -p "$work/fetch/src" "$prefix/bin"

# 1. Let cargo download the crate (it verifies the registry checksum).
cat >"$work/fetch/Cargo.toml" <<EOF
[package]
name = "wgroam-uci-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$CRATE = "=$VERSION"

[workspace]
EOF
: >"$work/fetch/src/lib.rs"
# Cargo's cache first (no network), then crates.io.
if ! (cd "$work/fetch" && cargo fetch --quiet --offline) >/dev/null 2>&1; then
  log "fetching $CRATE $VERSION from crates.io (cargo fetch)"
  (cd "$work/fetch" && cargo fetch --quiet) || die "cargo fetch of $CRATE $VERSION failed"
fi

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
crate_file=""
for f in "$cargo_home"/registry/cache/*/"$CRATE-$VERSION.crate"; do
  [[ -f "$f" ]] && crate_file="$f" && break
done
[[ -n "$crate_file" ]] || die "$CRATE-$VERSION.crate not found under $cargo_home/registry/cache"

# 2. Unpack into our own tree (uci's cmake writes uci_config.h into its source dir,
#    so never build inside cargo's registry).
tar -xzf "$crate_file" -C "$work"
src="$work/$CRATE-$VERSION"
[[ -f "$src/libubox/CMakeLists.txt" && -f "$src/uci/cli.c" ]] \
  || die "$crate_file does not contain libubox/ and uci/"

jobs="$(nproc 2>/dev/null || echo 1)"
(( jobs > 2 )) && jobs=2

# 3. libubox (static library is what uci links; lua and examples off).
log "building libubox"
cmake -S "$src/libubox" -B "$work/libubox-build" \
  -DCMAKE_INSTALL_PREFIX="$work/stage" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF -DUNIT_TESTING=OFF \
  >"$work/libubox-cmake.log" 2>&1 || { tail -n 30 "$work/libubox-cmake.log" >&2; die "libubox cmake failed"; }
make -C "$work/libubox-build" -j"$jobs" ubox-static \
  >"$work/libubox-make.log" 2>&1 || { tail -n 30 "$work/libubox-make.log" >&2; die "libubox build failed"; }
mkdir -p "$work/stage/include/libubox" "$work/stage/lib"
cp "$src"/libubox/*.h "$work/stage/include/libubox/"
cp "$work/libubox-build/libubox.a" "$work/stage/lib/"

# 4. uci, statically linked against libuci.a and libubox.a.
log "building uci"
cmake -S "$src/uci" -B "$work/uci-build" \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/stage" \
  -Dubox_include_dir="$work/stage/include" \
  -Dubox="$work/stage/lib/libubox.a" \
  -Dubox-static="$work/stage/lib/libubox.a" \
  -DBUILD_LUA=OFF -DBUILD_STATIC=ON -DUNIT_TESTING=OFF \
  >"$work/uci-cmake.log" 2>&1 || { tail -n 30 "$work/uci-cmake.log" >&2; die "uci cmake failed"; }
make -C "$work/uci-build" -j"$jobs" cli \
  >"$work/uci-make.log" 2>&1 || { tail -n 30 "$work/uci-make.log" >&2; die "uci build failed"; }

install -m 0755 "$work/uci-build/uci" "$tool.new"
mv -f "$tool.new" "$tool"

# 5. Smoke test: the tool must run on its own and read a config tree.
probe="$work/probe"
mkdir -p "$probe/conf" "$probe/save"
printf "config agent 'agent'\n\toption role 'hub'\n" >"$probe/conf/wgroam"
got="$("$tool" -c "$probe/conf" -t "$probe/save" get wgroam.agent.role)" \
  || die "built $tool does not run"
[[ "$got" == "hub" ]] || die "built $tool read '$got' instead of 'hub'"

echo "$want_stamp" >"$stamp"
rm -rf "$work"
log "built $tool"
echo "$tool"
