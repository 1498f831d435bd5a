#!/usr/bin/env bash
# The package version, one source of truth: Cargo.toml's `version` and
# `[package.metadata.openwrt] release`, printed as VERSION-rRELEASE (0.1.0-r1),
# the form `wgroam --version`, scripts/package.sh and the packages use.
#
#   scripts/version.sh           prints 0.1.0-r1
#   scripts/version.sh --check   also checks that the feed Makefiles
#                                (openwrt/Makefile, openwrt/luci-app-wgroam/Makefile)
#                                say the same in PKG_VERSION and PKG_RELEASE
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
manifest=$root/Cargo.toml

version=$(sed -n '/^\[package\]$/,/^\[/s/^version = "\(.*\)"$/\1/p' "$manifest" | head -n1)
release=$(sed -n '/^\[package\.metadata\.openwrt\]$/,/^\[/s/^release = \([0-9][0-9]*\)$/\1/p' "$manifest" | head -n1)
if [ -z "$version" ] || [ -z "$release" ]; then
  echo "version: Cargo.toml needs 'version = \"X.Y.Z\"' in [package] and 'release = N' in [package.metadata.openwrt]" >&2
  exit 1
fi

if [ "${1:-}" = --check ]; then
  bad=0
  for mk in "$root/openwrt/Makefile" "$root/openwrt/luci-app-wgroam/Makefile"; do
    [ -f "$mk" ] || continue
    v=$(sed -n 's/^PKG_VERSION:=//p' "$mk")
    r=$(sed -n 's/^PKG_RELEASE:=//p' "$mk")
    if [ "$v" != "$version" ] || [ "$r" != "$release" ]; then
      echo "version: ${mk#"$root"/} says PKG_VERSION:=$v PKG_RELEASE:=$r; expected $version and $release as in Cargo.toml" >&2
      bad=1
    fi
  done
  [ "$bad" = 0 ] || exit 1
fi
echo "$version-r$release"
