# Userland of a foreign-architecture test VM from Debian's .debs, sourced by
# tests/vm/build.sh (VM_ARCH other than x86_64; settings in tests/vm/arch.sh).
#
# Packages are downloaded with `apt-get download PKG:DEB_ARCH` (no install)
# and unpacked once into $CACHE/debs/PKG/. A tool's shared libraries are
# found by their sonames (readelf NEEDED, recursively) in the unpacked
# packages; when one is missing, the library packages the tools depend on
# (`apt-cache depends --recurse`, lib* and zlib*) are fetched too. Libraries
# and the program interpreter go to the paths the guest's loader looks at.
# shellcheck shell=bash

DEBS="$CACHE/debs"

# fetch_debs PKG...: downloads and unpacks those of the packages (of
# $DEB_ARCH) that are not in $DEBS yet.
fetch_debs() {
  local want=() p tmp deb name
  for p in "$@"; do
    [ -e "$DEBS/$p/.unpacked" ] || want+=("$p:$DEB_ARCH")
  done
  [ "${#want[@]}" -gt 0 ] || return 0
  mkdir -p "$DEBS"
  tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
  CLEANUP+=("$tmp")
  # apt downloads as _apt where it can; the private temp dir must be readable.
  chmod 0755 "$tmp"
  log "downloading ${want[*]}"
  if ! (cd "$tmp" && apt-get download -q "${want[@]}" >/dev/null 2>&1); then
    log "apt-get download failed; refreshing package lists"
    apt-get update -q >/dev/null
    (cd "$tmp" && apt-get download -q "${want[@]}" >/dev/null) ||
      die "cannot download ${want[*]} (is $DEB_ARCH a dpkg architecture? scripts/install-deps.sh)"
  fi
  for deb in "$tmp"/*.deb; do
    name=$(dpkg-deb -f "$deb" Package)
    rm -rf "${DEBS:?}/$name"
    mkdir -p "$DEBS/$name"
    dpkg-deb -x "$deb" "$DEBS/$name"
    touch "$DEBS/$name/.unpacked"
  done
}

# in_root ROOT PATH: PATH (absolute) inside ROOT with symlinks resolved inside
# ROOT (absolute link targets are relative to ROOT, not to the host); fails if
# it does not exist there.
in_root() {
  local root=$1 p=$2 t n=0
  while [ -L "$root$p" ]; do
    t=$(readlink "$root$p")
    case "$t" in
    /*) p=$t ;;
    *) p=$(dirname "$p")/$t ;;
    esac
    p=$(realpath -m -s "$p")
    n=$((n + 1))
    [ "$n" -lt 20 ] || return 1
  done
  [ -e "$root$p" ] && echo "$p"
}

# find_lib SONAME: "FILE PATH" of the library SONAME in the unpacked packages,
# FILE on the host (symlinks resolved), PATH where the guest's loader finds it.
find_lib() {
  local so=$1 d r p
  for d in "/lib/$DEB_MULTIARCH" "/usr/lib/$DEB_MULTIARCH" /lib /usr/lib; do
    for r in "$DEBS"/*/; do
      r=${r%/}
      p=$(in_root "$r" "$d/$so") || continue
      echo "$r$p $d/$so"
      return 0
    done
  done
  return 1
}

LIB_PKGS_FETCHED=0
# fetch_lib_pkgs: the library packages of every tool package, recursively.
fetch_lib_pkgs() {
  [ "$LIB_PKGS_FETCHED" = 0 ] || return 0
  LIB_PKGS_FETCHED=1
  local pkgs=() libs=() t
  for t in "${TOOLS[@]}"; do pkgs+=("${TOOL_PKG[$t]}:$DEB_ARCH"); done
  log "resolving the library packages of ${pkgs[*]}"
  mapfile -t libs < <(apt-cache depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances "${pkgs[@]}" |
    sed -n -E "s/^((lib|zlib)[a-z0-9.+-]*):$DEB_ARCH\$/\\1/p" | sort -u)
  [ "${#libs[@]}" -gt 0 ] || die "apt-cache depends found no library packages for ${pkgs[*]}"
  fetch_debs "${libs[@]}"
}

declare -A STAGED_LIB=()
# stage_libs FILE: the program interpreter and the shared libraries FILE needs
# (recursively) into $STAGE.
stage_libs() {
  local queue=("$1") f so hit src dst interp
  interp=$(readelf -lW "$1" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
  if [ -n "$interp" ] && [ ! -e "$STAGE$interp" ]; then
    src=$(in_root "$DEBS/libc6" "$interp") || die "program interpreter $interp not in libc6:$DEB_ARCH"
    mkdir -p "$STAGE$(dirname "$interp")"
    cp "$DEBS/libc6$src" "$STAGE$interp"
  fi
  while [ "${#queue[@]}" -gt 0 ]; do
    f=${queue[0]}
    queue=("${queue[@]:1}")
    for so in $(readelf -dW "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
      [ -z "${STAGED_LIB[$so]:-}" ] || continue
      if ! hit=$(find_lib "$so"); then
        fetch_lib_pkgs
        hit=$(find_lib "$so") || die "no $so ($DEB_ARCH) in the packages $f depends on"
      fi
      STAGED_LIB[$so]=1
      src=${hit% *}
      dst=${hit#* }
      mkdir -p "$STAGE$(dirname "$dst")"
      cp "$src" "$STAGE$dst"
      queue+=("$src")
    done
  done
}

# stage_foreign_tool TOOL PKG: TOOL from PKG to /usr/bin/TOOL with its libraries.
stage_foreign_tool() {
  local t=$1 pkg=$2 d p
  fetch_debs "$pkg"
  for d in /bin /sbin /usr/bin /usr/sbin; do
    if p=$(in_root "$DEBS/$pkg" "$d/$t"); then
      cp "$DEBS/$pkg$p" "$STAGE/usr/bin/$t"
      stage_libs "$DEBS/$pkg$p"
      return 0
    fi
  done
  die "$t not found in $pkg:$DEB_ARCH"
}
