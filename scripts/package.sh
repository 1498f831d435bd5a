#!/usr/bin/env bash
# Builds OpenWrt packages of wgroam from a prebuilt static binary, without the
# OpenWrt SDK:
#
#   scripts/package.sh BINARY ARCH VERSION OUTDIR
#
#   BINARY   static wgroam for ARCH (scripts/build-targets.sh)
#   ARCH     OpenWrt package architecture: mips_24kc, mipsel_24kc,
#            arm_cortex-a7_neon-vfpv4, arm_cortex-a9, aarch64_cortex-a53,
#            aarch64_generic, x86_64 (checked against the binary's ELF header)
#   VERSION  package version valid for both opkg and apk, e.g. 0.1.0-r1;
#            'auto': scripts/version.sh (Cargo.toml), what --version prints
#   OUTDIR   receives wgroam_VERSION_ARCH.ipk and wgroam-VERSION.ARCH.apk
#
# The .ipk is what OpenWrt <= 24.10 installs with opkg: a gzip'd tar (not ar)
# of ./debian-binary, ./data.tar.gz and ./control.tar.gz. The .apk is the
# apk v3 (ADB) format of OpenWrt 25.12+, written by scripts/apk-mkpkg.py.
# Both carry the same files, scripts and metadata as the feed package built
# by openwrt/Makefile in an SDK. Output is reproducible: file times are
# SOURCE_DATE_EPOCH (default: the last commit's time, else 0).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
files=$root/openwrt/files

die() {
  echo "package: $*" >&2
  exit 1
}

[ "$#" -eq 4 ] || die "usage: scripts/package.sh BINARY ARCH VERSION OUTDIR"
binary=$1 arch=$2 version=$3 outdir=$4

[ -f "$binary" ] || die "$binary: no such file"
if [ "$version" = auto ]; then
  version=$("$root/scripts/version.sh")
fi

# apk's version grammar (a subset opkg orders the same way).
re='^[0-9]+(\.[0-9]+)*[a-z]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*(-r[0-9]+)?$'
[[ $version =~ $re ]] ||
  die "version '$version' is not valid for apk; expected e.g. 0.1.0-r1"

# ELF class (1: 32-bit, 2: 64-bit), data (1: little, 2: big endian) and
# e_machine each ARCH needs.
case "$arch" in
mips_*) want="1 2 8" ;;
mipsel_*) want="1 1 8" ;;
arm_*) want="1 1 40" ;;
aarch64_*) want="2 1 183" ;;
x86_64) want="2 1 62" ;;
i386_* | i486 | i586 | i686*) want="1 1 3" ;;
*) die "unknown architecture '$arch'; expected an OpenWrt package architecture such as mips_24kc" ;;
esac
read -r -a hdr <<<"$(od -An -tu1 -N20 "$binary" | tr -s ' \n' '  ')"
if [ "${#hdr[@]}" -lt 20 ] || [ "${hdr[*]:0:4}" != "127 69 76 70" ]; then
  die "$binary: not an ELF file"
fi
if [ "${hdr[5]}" = 2 ]; then
  machine=$((hdr[18] * 256 + hdr[19]))
else
  machine=$((hdr[19] * 256 + hdr[18]))
fi
got="${hdr[4]} ${hdr[5]} $machine"
[ "$got" = "$want" ] ||
  die "$binary does not match $arch (ELF class/endianness/machine $got, expected $want)"
# A static binary has no program interpreter (PT_INTERP): OpenWrt's libc is
# not what it was linked against.
command -v readelf >/dev/null || die "readelf missing (Debian package binutils)"
if readelf -lW "$binary" | grep -q 'INTERP'; then
  die "$binary is dynamically linked (has a program interpreter); build it with scripts/build-targets.sh"
fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The installed tree; modes as the feed Makefile installs them.
data=$work/data
install -d -m 0755 "$data/usr/sbin" "$data/etc/init.d" "$data/etc/config" \
  "$data/etc/uci-defaults" "$data/etc/hotplug.d/iface" "$data/etc/hotplug.d/ntp" \
  "$data/usr/libexec/rpcd"
install -m 0755 "$binary" "$data/usr/sbin/wgroam"
install -m 0755 "$files/wgroam.init" "$data/etc/init.d/wgroam"
install -m 0600 "$files/wgroam.config" "$data/etc/config/wgroam"
install -m 0755 "$files/wgroam.uci-defaults" "$data/etc/uci-defaults/50-wgroam"
install -m 0644 "$files/wgroam.hotplug-iface" "$data/etc/hotplug.d/iface/95-wgroam"
install -m 0644 "$files/wgroam.hotplug-ntp" "$data/etc/hotplug.d/ntp/95-wgroam"
install -m 0755 "$files/wgroam.rpcd" "$data/usr/libexec/rpcd/wgroam"
installed_size=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')

depends="kmod-wireguard, wireguard-tools"
description="WireGuard roaming agent: keeps an IPv6 split tunnel alive for a roaming router (hub and roam roles)."

# Maintainer scripts: the same behaviour as OpenWrt's default_postinst /
# default_prerm for a package with one init script and one uci-defaults file.
# With $IPKG_INSTROOT set (image build) only the rc.d links are made; on a
# live system the uci-defaults run now, a fresh install enables the service,
# and the service is (re)started (it stays stopped while no role is set).
ctl=$work/control
mkdir -p "$ctl"
cat >"$ctl/postinst" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT:-0}" = 1 ] && exit 0
root="${IPKG_INSTROOT:-}"
if [ -n "$root" ]; then
	sh "$root/etc/rc.common" "$root/etc/init.d/wgroam" enable
	exit 0
fi
if [ -f /etc/uci-defaults/50-wgroam ]; then
	( cd /etc/uci-defaults && . ./50-wgroam ) && rm -f /etc/uci-defaults/50-wgroam
fi
[ "${PKG_UPGRADE:-0}" = 1 ] || /etc/init.d/wgroam enable
/etc/init.d/wgroam start || true
exit 0
EOF
cat >"$ctl/prerm" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT:-0}" = 1 ] && exit 0
root="${IPKG_INSTROOT:-}"
if [ -n "$root" ]; then
	sh "$root/etc/rc.common" "$root/etc/init.d/wgroam" disable
	exit 0
fi
[ "${PKG_UPGRADE:-0}" = 1 ] || /etc/init.d/wgroam disable
/etc/init.d/wgroam stop || true
exit 0
EOF
chmod 0755 "$ctl/postinst" "$ctl/prerm"
echo /etc/config/wgroam >"$ctl/conffiles"
cat >"$ctl/control" <<EOF
Package: wgroam
Version: $version
Depends: $depends
License: GPL-2.0-or-later
LicenseFiles: LICENSE
Section: net
SourceDateEpoch: $SOURCE_DATE_EPOCH
Maintainer: wgroam maintainers
Architecture: $arch
Installed-Size: $installed_size
Description:  $description
EOF
chmod 0644 "$ctl/control" "$ctl/conffiles"

# Deterministic tar: sorted, numeric root ownership, fixed times.
dtar() {
  tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$SOURCE_DATE_EPOCH" "$@"
}

ipk_dir=$work/ipk
mkdir -p "$ipk_dir"
printf '2.0\n' >"$ipk_dir/debian-binary"
(cd "$data" && dtar -cf - .) | gzip -9n >"$ipk_dir/data.tar.gz"
(cd "$ctl" && dtar -cf - .) | gzip -9n >"$ipk_dir/control.tar.gz"
touch -d "@$SOURCE_DATE_EPOCH" "$ipk_dir"/*
ipk=$outdir/wgroam_${version}_${arch}.ipk
(cd "$ipk_dir" && dtar -cf - ./debian-binary ./data.tar.gz ./control.tar.gz) |
  gzip -9n >"$ipk.tmp"
mv -f "$ipk.tmp" "$ipk"
echo "package: $ipk ($(stat -c %s "$ipk") bytes)"

# The .apk: the same tree plus the metadata OpenWrt's apk packages carry in
# /lib/apk/packages (file list; conffiles with their sha256 for sysupgrade).
apk_data=$work/apk-data
cp -a "$data" "$apk_data"
mkdir -p "$apk_data/lib/apk/packages"
(cd "$data" && find . -type f -printf '/%P\n' | LC_ALL=C sort) >"$apk_data/lib/apk/packages/wgroam.list"
cp "$ctl/conffiles" "$apk_data/lib/apk/packages/wgroam.conffiles"
while read -r f; do
  echo "$f $(sha256sum "$data$f" | cut -d' ' -f1)"
done <"$ctl/conffiles" >"$apk_data/lib/apk/packages/wgroam.conffiles_static"
chmod 0644 "$apk_data"/lib/apk/packages/*
chmod 0755 "$apk_data/lib" "$apk_data/lib/apk" "$apk_data/lib/apk/packages"
{
  echo '#!/bin/sh'
  echo 'export PKG_UPGRADE=1'
  tail -n +2 "$ctl/postinst"
} >"$work/post-upgrade"

apk=$outdir/wgroam-${version}.${arch}.apk
python3 "$root/scripts/apk-mkpkg.py" \
  --name wgroam --version "$version" --arch "$arch" \
  --description "$description" --license GPL-2.0-or-later \
  --origin wgroam --maintainer "wgroam maintainers" \
  --depends kmod-wireguard --depends wireguard-tools \
  --build-time "$SOURCE_DATE_EPOCH" \
  --script "post-install=$ctl/postinst" \
  --script "post-upgrade=$work/post-upgrade" \
  --script "pre-deinstall=$ctl/prerm" \
  --files "$apk_data" --output "$apk.tmp"
mv -f "$apk.tmp" "$apk"
echo "package: $apk ($(stat -c %s "$apk") bytes)"
