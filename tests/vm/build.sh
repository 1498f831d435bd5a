#!/usr/bin/env bash
# Builds the kernel-WireGuard test VM: a Debian 12 kernel plus a tiny initramfs.
#
#   [VM_ARCH=x86_64|aarch64|mipsel] tests/vm/build.sh [SCENARIO]
#
# Outputs (under target/vm/ for x86_64, target/vm/ARCH/ for the others; the
# architectures' settings are in tests/vm/arch.sh):
#   vmlinuz             Debian 12 kernel (cached with its modules; see kernel-*/)
#   vmlinux             x86_64: the same, uncompressed, for direct (PVH) boot
#   initramfs.cpio.gz   busybox, kernel modules (wireguard, veth), ip, wg, wgroam,
#                       /etc/vm-lib.sh (tests/vm/lib.sh: helpers scenarios may
#                       source) and /scenario.sh (tests/vm/scenarios/SCENARIO.sh); with
#                       nft and the nftables NAT modules if the scenario has a
#                       line "# vm-needs: nft"
#
# The kernel package is fetched once with apt-get download (newest
# linux-image-6.1.0-N-FLAVOUR of the architecture, or VM_KERNEL_PKG) and
# cached; a second run only re-packs the initramfs (about a second).
# Userland: on x86_64 the host's static busybox and its ip/wg/nft with their
# libraries (ldd). Other architectures take busybox-static, iproute2,
# wireguard-tools, nftables and the libraries they need (readelf NEEDED,
# resolved among the packages `apt-cache depends --recurse` names) from that
# architecture's .debs, downloaded once into debs/ (apt must know the
# architecture: scripts/install-deps.sh). Modules the kernel has built in
# (modules.builtin) are skipped.
# VM_EXTRA_DIR: a directory copied to /extra in the image (files a scenario
# needs from the host, e.g. bench/hub.sh --vm's flood generator).
# WGROAM_BIN: the static agent binary to ship. Default on x86_64: the musl
# release build, brought up to date with cargo first; elsewhere
# target/dist/wgroam-TRIPLE as scripts/build-targets.sh builds it (not built
# here: tests/e2e/53-vm-aarch64.sh and 54-vm-mipsel.sh do that first).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/vm/arch.sh
. "$ROOT/tests/vm/arch.sh"
CACHE=$VM_CACHE
SCENARIO=${1:-}
DEFAULT_BIN="$ROOT/target/x86_64-unknown-linux-musl/release/wgroam"
[ "$VM_ARCH" = x86_64 ] || DEFAULT_BIN="$ROOT/target/dist/wgroam-$TRIPLE"
WGROAM_BIN=${WGROAM_BIN:-$DEFAULT_BIN}

die() { echo "vm-build: $*" >&2; exit 1; }
log() { echo "vm-build: $*" >&2; }

# Modules the initramfs loads, in addition to their dependencies.
MODULES=(wireguard veth)
# Dynamically linked tools copied with their libraries (to /usr/bin).
TOOLS=(ip wg)
# The Debian package of each tool (foreign architectures).
declare -A TOOL_PKG=([ip]=iproute2 [wg]=wireguard-tools [nft]=nftables [tcpdump]=tcpdump)

SCENARIO_SRC=
if [ -n "$SCENARIO" ]; then
  SCENARIO_SRC="$ROOT/tests/vm/scenarios/$SCENARIO.sh"
  [ -f "$SCENARIO_SRC" ] || die "no scenario $SCENARIO_SRC"
  # nftables (NAT, conntrack; about 1.3 MB more) only for scenarios that ask
  # for it with a line "# vm-needs: nft".
  if grep -qx '# vm-needs: nft' "$SCENARIO_SRC"; then
    MODULES+=(nf_tables nft_chain_nat nft_masq nft_ct)
    TOOLS+=(nft)
  fi
  # tcpdump (with libpcap; a same-run baseline for the capture benchmark)
  # for "# vm-needs: tcpdump".
  if grep -qx '# vm-needs: tcpdump' "$SCENARIO_SRC"; then
    TOOLS+=(tcpdump)
  fi
  # A virtio NIC (QEMU -device virtio-net-pci) for "# vm-needs: net".
  if grep -qx '# vm-needs: net' "$SCENARIO_SRC"; then
    MODULES+=(virtio_pci virtio_net)
  fi
fi

NEED=(busybox cpio gzip xz readelf dpkg-deb apt-get apt-cache)
[ "$VM_ARCH" != x86_64 ] || NEED+=(ldd "${TOOLS[@]}")
for t in "${NEED[@]}"; do
  command -v "$t" >/dev/null || die "missing tool '$t' (run scripts/install-deps.sh)"
done
# The host's busybox runs depmod; on x86_64 it is also the guest's.
HOST_BUSYBOX=$(command -v busybox)
# A static ELF has no program interpreter.
is_dynamic() { readelf -lW "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }
is_dynamic "$HOST_BUSYBOX" && die "$HOST_BUSYBOX is not static (install busybox-static)"

mkdir -p "$CACHE"
CLEANUP=()
cleanup() { [ "${#CLEANUP[@]}" -eq 0 ] || rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT

# ---------------------------------------------------------------- kernel ---

newest_kernel_pkg() {
  apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
    grep -E "$KERNEL_RE" | sort -V | tail -n 1
}

# Fetches and unpacks the kernel package into $CACHE/kernel-PKG/ (once).
fetch_kernel() {
  local pkg=$1 dir=$2 tmp deb
  tmp=$(mktemp -d "$CACHE/fetch.XXXXXX")
  CLEANUP+=("$tmp")
  log "downloading $pkg"
  # apt downloads as _apt where it can; the private temp dir must be readable.
  chmod 0755 "$tmp"
  if ! (cd "$tmp" && apt-get download -q "$pkg:$DEB_ARCH" >/dev/null 2>&1); then
    log "apt-get download failed; refreshing package lists"
    apt-get update -q >/dev/null
    (cd "$tmp" && apt-get download -q "$pkg:$DEB_ARCH" >/dev/null) || die "cannot download $pkg:$DEB_ARCH"
  fi
  deb=$(ls "$tmp"/*.deb)
  dpkg-deb -x "$deb" "$tmp/root"
  rm -f "$deb"
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
}

KPKG=${VM_KERNEL_PKG:-}
if [ -z "$KPKG" ]; then
  # Reuse what is cached; ask apt only on the first run.
  KPKG=$(cat "$CACHE/kernel.pkg" 2>/dev/null || true)
  if [ -z "$KPKG" ] || [ ! -d "$CACHE/kernel-$KPKG" ]; then
    KPKG=$(newest_kernel_pkg)
    if [ -z "$KPKG" ]; then
      log "no kernel package ($KERNEL_RE) in the package lists; running apt-get update"
      apt-get update -q >/dev/null
      KPKG=$(newest_kernel_pkg)
    fi
    [ -n "$KPKG" ] || die "no kernel package ($KERNEL_RE) found by apt-cache (is $DEB_ARCH a dpkg architecture? scripts/install-deps.sh)"
  fi
fi
KDIR="$CACHE/kernel-$KPKG"
[ -d "$KDIR/lib/modules" ] || fetch_kernel "$KPKG" "$KDIR"
echo "$KPKG" >"$CACHE/kernel.pkg"

KVER=$(ls "$KDIR/lib/modules")
[ "$(echo "$KVER" | wc -l)" = 1 ] || die "expected one kernel version in $KDIR/lib/modules"
MDIR="$KDIR/lib/modules/$KVER"
# x86_64: a bzImage; aarch64: a gzip-compressed Image; Malta: a
# self-decompressing ELF. QEMU's -kernel loads each as it is.
[ -e "$KDIR/boot/vmlinuz-$KVER" ] || die "no boot/vmlinuz-$KVER in $KPKG"
ln -sfn "kernel-$KPKG/boot/vmlinuz-$KVER" "$CACHE/vmlinuz"

# The uncompressed ELF kernel boots directly through its PVH entry point:
# no firmware, no real-mode setup, no in-guest decompression (under TCG this
# saves several seconds per boot). run.sh uses it when present.
# XEN_ELFNOTE_PHYS32_ENTRY (18) marks the PVH entry point.
extract_vmlinux() {
  local img=$1 out=$2 off
  CLEANUP+=("$out.new")
  while IFS=: read -r off _; do
    tail -c "+$((off + 1))" "$img" | xz -dc --single-stream >"$out.new" 2>/dev/null || true
    if [ "$(head -c 4 "$out.new" | od -An -c | tr -d ' ')" = '177ELF' ] &&
      readelf -n "$out.new" 2>/dev/null | grep -q 'Unknown note type: (0x00000012)'; then
      mv "$out.new" "$out"
      return 0
    fi
  done < <(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$img")
  return 1
}
rm -f "$CACHE/vmlinux"
if [ "$VM_ARCH" = x86_64 ]; then
  if [ ! -s "$KDIR/vmlinux" ]; then
    extract_vmlinux "$KDIR/boot/vmlinuz-$KVER" "$KDIR/vmlinux" ||
      log "no PVH-bootable vmlinux in $KPKG; booting the bzImage"
  fi
  [ -s "$KDIR/vmlinux" ] && ln -s "kernel-$KPKG/vmlinux" "$CACHE/vmlinux"
fi

# Debian ships no modules.dep (depmod runs at install time): build it with
# busybox depmod. Compressed modules are unpacked first, so that both depmod
# and the initramfs (busybox insmod) see plain .ko files.
if [ ! -s "$MDIR/modules.dep" ]; then
  if [ -n "$(find "$MDIR" -name '*.ko.xz' -print -quit)" ]; then
    log "decompressing .ko.xz modules"
    find "$MDIR" -name '*.ko.xz' -print0 | xargs -0 -r -n 64 xz -d
  fi
  if [ -n "$(find "$MDIR" -name '*.ko.zst' -print -quit)" ]; then
    command -v zstd >/dev/null || die "modules are .ko.zst but zstd is missing"
    log "decompressing .ko.zst modules"
    find "$MDIR" -name '*.ko.zst' -print0 | xargs -0 -r -n 64 zstd -q -d --rm
  fi
  log "generating modules.dep"
  "$HOST_BUSYBOX" depmod -b "$KDIR" "$KVER" || die "depmod failed for $KVER"
fi

# Resolves MODULES to an ordered load list (dependencies first), as paths
# relative to $MDIR: hard dependencies from modules.dep, soft "pre:"/"post:"
# dependencies (e.g. libcrc32c needs crc32c) from the modules' own modinfo,
# named by module name or alias (modules.alias; *_generic preferred).
declare -A DEPS=() BYNAME=() ALIAS=() SEEN=()
while IFS= read -r line; do
  p=${line%%:*}
  DEPS[$p]=${line#*:}
  n=${p##*/}
  n=${n%.ko}
  BYNAME[${n//-/_}]=$p
done <"$MDIR/modules.dep"
while read -r _ a m; do
  m=${m//-/_}
  if [ -z "${ALIAS[$a]:-}" ] || [[ $m == *_generic ]]; then ALIAS[$a]=$m; fi
done < <(grep -v ':' "$MDIR/modules.alias")
module_path() {
  local n=${1//-/_}
  if [ -n "${BYNAME[$n]:-}" ]; then echo "${BYNAME[$n]}"; return 0; fi
  n=${ALIAS[$1]:-}
  [ -n "$n" ] && [ -n "${BYNAME[$n]:-}" ] && echo "${BYNAME[$n]}"
}
LOAD=()
add_module() {
  local p=$1 d soft word phase=pre pre=() post=()
  [ -n "${SEEN[$p]:-}" ] && return 0
  SEEN[$p]=1
  soft=$(tr '\0' '\n' <"$MDIR/$p" | sed -n 's/^softdep=//p')
  for word in $soft; do
    case "$word" in
      pre:) phase=pre ;;
      post:) phase=post ;;
      *)
        d=$(module_path "$word") || die "softdep $word of $p not found"
        if [ "$phase" = pre ]; then pre+=("$d"); else post+=("$d"); fi
        ;;
    esac
  done
  for d in ${DEPS[$p]} "${pre[@]}"; do add_module "$d"; done
  LOAD+=("$p")
  for d in "${post[@]}"; do add_module "$d"; done
}
# Built into the kernel (the Malta flavour has some of them): nothing to load.
declare -A BUILTIN=()
if [ -f "$MDIR/modules.builtin" ]; then
  while IFS= read -r p; do
    n=${p##*/}
    n=${n%.ko}
    BUILTIN[${n//-/_}]=1
  done <"$MDIR/modules.builtin"
fi
for m in "${MODULES[@]}"; do
  if p=$(module_path "$m"); then
    add_module "$p"
  elif [ -n "${BUILTIN[${m//-/_}]:-}" ]; then
    log "module $m is built into $KVER"
  else
    die "module $m neither in $MDIR/modules.dep nor built in"
  fi
done

# ---------------------------------------------------------------- wgroam ---

if [ "$VM_ARCH" = x86_64 ] && [ "$WGROAM_BIN" = "$DEFAULT_BIN" ]; then
  # Always asked: cargo is a no-op when the binary is fresh, and a stale agent
  # would test old code.
  (cd "$ROOT" && cargo build -q --release --target x86_64-unknown-linux-musl) ||
    die "cargo build of wgroam (musl, release) failed"
fi
[ -x "$WGROAM_BIN" ] || die "WGROAM_BIN=$WGROAM_BIN does not exist (build it: scripts/build-targets.sh --dist target/dist $VM_ARCH)"
is_dynamic "$WGROAM_BIN" && die "$WGROAM_BIN is dynamically linked (need the static musl build)"
machine=$(readelf -h "$WGROAM_BIN" | sed -n 's/^ *Machine: *//p')
[ "$machine" = "$ELF_MACHINE" ] || die "$WGROAM_BIN is for '$machine', the $VM_ARCH VM needs '$ELF_MACHINE'"
if [ "$VM_ARCH" = mipsel ]; then
  readelf -h "$WGROAM_BIN" | grep -q 'little endian' || die "$WGROAM_BIN is not little-endian MIPS"
fi

# ------------------------------------------------------------- initramfs ---

STAGE=$(mktemp -d "$CACHE/initramfs.XXXXXX")
CLEANUP+=("$STAGE" "$CACHE/initramfs.cpio.gz.new")
chmod 0755 "$STAGE"
mkdir -p "$STAGE"/{bin,usr/bin,etc,proc,sys,dev,tmp,run,var}
ln -s bin "$STAGE/sbin"
ln -s ../run "$STAGE/var/run"

if [ "$VM_ARCH" = x86_64 ]; then
  BUSYBOX=$HOST_BUSYBOX
  APPLETS=$("$BUSYBOX" --list)
else
  # shellcheck source=tests/vm/foreign.sh
  . "$ROOT/tests/vm/foreign.sh"
  fetch_debs busybox-static libc6
  BUSYBOX="$DEBS/busybox-static/bin/busybox"
  is_dynamic "$BUSYBOX" && die "$BUSYBOX is not static"
  # Its applet list, from the binary itself where qemu-user can run it (the
  # host's busybox has the same Debian configuration otherwise).
  if [ -n "$QEMU_USER" ] && command -v "$QEMU_USER" >/dev/null; then
    APPLETS=$("$QEMU_USER" "$BUSYBOX" --list) || die "$QEMU_USER $BUSYBOX --list failed"
  else
    APPLETS=$("$HOST_BUSYBOX" --list)
  fi
fi
cp "$BUSYBOX" "$STAGE/bin/busybox"
for a in $APPLETS; do
  [ "$a" = busybox ] || ln -s busybox "$STAGE/bin/$a"
done

# Copies FILE to the same path in the image, following symlinks.
copy_file() {
  local f=$1
  [ -e "$STAGE$f" ] && return 0
  mkdir -p "$STAGE$(dirname "$f")"
  cp -L "$f" "$STAGE$f"
}
for t in "${TOOLS[@]}"; do
  rm -f "$STAGE/bin/$t" # iproute2's ip replaces busybox's
  if [ "$VM_ARCH" != x86_64 ]; then
    stage_foreign_tool "$t" "${TOOL_PKG[$t]}"
    continue
  fi
  bin=$(command -v "$t")
  cp -L "$bin" "$STAGE/usr/bin/$t"
  # ldd lines: "libx.so => /path (addr)", "/lib64/ld-linux-x86-64.so.2 (addr)"
  while read -r lib; do
    copy_file "$lib"
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
done
cp "$WGROAM_BIN" "$STAGE/usr/bin/wgroam"

# busybox sh runs its own applets before searching PATH (it was built with
# FEATURE_SH_STANDALONE), so a plain `ip` in a script would be busybox's ip.
# Shell functions come first: /etc/vm-env.sh, sourced before the scenario,
# points the shadowed names at the real tools.
{
  echo "# Generated by tests/vm/build.sh: real tools instead of busybox applets."
  for t in "${TOOLS[@]}"; do
    if grep -qx "$t" <<<"$APPLETS"; then
      echo "$t() { /usr/bin/$t \"\$@\"; }"
    fi
  done
} >"$STAGE/etc/vm-env.sh"

# Modules in their usual place with a pruned modules.dep/modules.alias, so
# that the kernel's on-demand loading (busybox modprobe) finds them too;
# /etc/modules is the order /init loads them in.
SMDIR="$STAGE/lib/modules/$KVER"
mkdir -p "$SMDIR"
: >"$STAGE/etc/modules"
for p in "${LOAD[@]}"; do
  mkdir -p "$SMDIR/$(dirname "$p")"
  cp "$MDIR/$p" "$SMDIR/$p"
  echo "$p" >>"$STAGE/etc/modules"
  echo "$p:${DEPS[$p]}" >>"$SMDIR/modules.dep"
  n=${p##*/}
  n=${n%.ko}
  grep -E " ${n//[-_]/[-_]}\$" "$MDIR/modules.alias" >>"$SMDIR/modules.alias" || true
done

cp "$ROOT/tests/vm/init" "$STAGE/init"
chmod 0755 "$STAGE/init"
# Helpers scenarios may source (topology, agents, timing).
cp "$ROOT/tests/vm/lib.sh" "$STAGE/etc/vm-lib.sh"
# VM_EXTRA_DIR: files for the scenario (e.g. bench/hub.sh --vm's generator and
# keys), in /extra.
if [ -n "${VM_EXTRA_DIR:-}" ]; then
  [ -d "$VM_EXTRA_DIR" ] || die "VM_EXTRA_DIR=$VM_EXTRA_DIR is not a directory"
  mkdir -p "$STAGE/extra"
  cp -a "$VM_EXTRA_DIR/." "$STAGE/extra/"
fi
if [ -n "$SCENARIO_SRC" ]; then
  cp "$SCENARIO_SRC" "$STAGE/scenario.sh"
  chmod 0755 "$STAGE/scenario.sh"
fi

(cd "$STAGE" && find . -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc --owner 0:0 --quiet) | gzip -6 >"$CACHE/initramfs.cpio.gz.new"
mv "$CACHE/initramfs.cpio.gz.new" "$CACHE/initramfs.cpio.gz"
log "$VM_ARCH: kernel $KVER ($KPKG), initramfs $(du -k "$CACHE/initramfs.cpio.gz" | cut -f1) KiB," \
  "modules: ${#LOAD[@]}"
