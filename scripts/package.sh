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
#   OUTDIR   receives wgroam_VERSION_ARCH.ipk and wgroam-VERSION.apk, and
#            luci-app-wgroam_VERSION_all.ipk and luci-app-wgroam-VERSION.apk
#            (apk files carry no architecture in their name, as the 25.12
#            SDK names them: use one OUTDIR per architecture), and the
#            feed index Packages, Packages.gz (+ Packages.sig when
#            WGROAM_FEED_KEY names a signify secret key; see the end)
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
  "$data/usr/libexec/rpcd" "$data/etc/capabilities"
install -m 0755 "$binary" "$data/usr/sbin/wgroam"
install -m 0755 "$files/wgroam.init" "$data/etc/init.d/wgroam"
install -m 0600 "$files/wgroam.config" "$data/etc/config/wgroam"
install -m 0755 "$files/wgroam.uci-defaults" "$data/etc/uci-defaults/50-wgroam"
install -m 0644 "$files/wgroam.hotplug-iface" "$data/etc/hotplug.d/iface/95-wgroam"
install -m 0644 "$files/wgroam.hotplug-ntp" "$data/etc/hotplug.d/ntp/95-wgroam"
install -m 0755 "$files/wgroam.rpcd" "$data/usr/libexec/rpcd/wgroam"
install -m 0644 "$files/wgroam.capabilities" "$data/etc/capabilities/wgroam.json"
installed_size=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')

depends="kmod-wireguard, wireguard-tools"
description="WireGuard roaming agent: keeps an IPv6 split tunnel alive for a roaming router (hub and roam roles)."

# Maintainer scripts: OpenWrt's default_postinst / default_prerm for a
# package with one init script and one uci-defaults file, plus what upgrades
# need. With $IPKG_INSTROOT set (image build) only the rc.d links are made.
# On a live system the uci-defaults run, a fresh install enables the service
# and starts it (it stays stopped while no role is set), and rpcd is reloaded
# so that it loads the `wgroam` ubus plugin.
# Upgrades must leave the NEW binary running and never enable a service the
# user disabled:
#  - opkg runs the old package's prerm (PKG_UPGRADE=1), then the new postinst
#    (PKG_UPGRADE=1): prerm notes in /tmp (RAM) whether the agent ran, stops
#    it, and postinst starts it again only then;
#  - apk runs no pre-upgrade step of the old package, only the new
#    post-upgrade: a plain `start` would leave the old agent running (procd
#    sees the same command line), so a running agent is restarted.
#  - Not running before: started only if enabled (as a fresh boot would).
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
[ -x /etc/init.d/rpcd ] && /etc/init.d/rpcd reload
if [ "${PKG_UPGRADE:-0}" != 1 ]; then
	/etc/init.d/wgroam enable
	/etc/init.d/wgroam start || true
elif [ -e /tmp/wgroam.upgrade-was-running ]; then
	rm -f /tmp/wgroam.upgrade-was-running
	/etc/init.d/wgroam start || true
elif /etc/init.d/wgroam running; then
	/etc/init.d/wgroam restart || true
elif /etc/init.d/wgroam enabled; then
	/etc/init.d/wgroam start || true
fi
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
if [ "${PKG_UPGRADE:-0}" = 1 ]; then
	/etc/init.d/wgroam running && : >/tmp/wgroam.upgrade-was-running
else
	/etc/init.d/wgroam disable
fi
/etc/init.d/wgroam stop || true
exit 0
EOF
chmod 0755 "$ctl/postinst" "$ctl/prerm"
echo /etc/config/wgroam >"$ctl/conffiles"
chmod 0644 "$ctl/conffiles"

# Deterministic tar: sorted, numeric root ownership, fixed times.
dtar() {
  tar --format=gnu --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime="@$SOURCE_DATE_EPOCH" "$@"
}

# mkipk NAME ARCH DATA CTL DEPENDS SECTION DESCRIPTION: writes
# OUTDIR/NAME_VERSION_ARCH.ipk from the trees DATA and CTL (control added).
mkipk() {
  local name=$1 parch=$2 tree=$3 c=$4 deps=$5 section=$6 desc=$7 size d
  size=$(find "$tree" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Depends: $deps"
    echo "License: GPL-2.0-or-later"
    echo "LicenseFiles: LICENSE"
    echo "Section: $section"
    echo "SourceDateEpoch: $SOURCE_DATE_EPOCH"
    echo "Maintainer: wgroam maintainers"
    echo "Architecture: $parch"
    echo "Installed-Size: $size"
    echo "Description:  $desc"
  } >"$c/control"
  chmod 0644 "$c/control"
  d=$work/ipk-$name
  mkdir -p "$d"
  printf '2.0\n' >"$d/debian-binary"
  (cd "$tree" && dtar -cf - .) | gzip -9n >"$d/data.tar.gz"
  (cd "$c" && dtar -cf - .) | gzip -9n >"$d/control.tar.gz"
  touch -d "@$SOURCE_DATE_EPOCH" "$d"/*
  local ipk=$outdir/${name}_${version}_${parch}.ipk
  (cd "$d" && dtar -cf - ./debian-binary ./data.tar.gz ./control.tar.gz) |
    gzip -9n >"$ipk.tmp"
  mv -f "$ipk.tmp" "$ipk"
  echo "package: $ipk ($(stat -c %s "$ipk") bytes)"
}

# mkapk NAME APKARCH DATA CTL DESCRIPTION DEPENDS...: writes OUTDIR/NAME-VERSION.apk
# (named as the 25.12 SDK names them: no architecture in the file name) from
# DATA plus the metadata OpenWrt's apk packages carry in /lib/apk/packages
# (file list; conffiles with their sha256 for sysupgrade).
mkapk() {
  local name=$1 aarch=$2 tree=$3 c=$4 desc=$5 a
  a=$work/apk-$name
  shift 5
  cp -a "$tree" "$a"
  mkdir -p "$a/lib/apk/packages"
  (cd "$tree" && find . -type f -printf '/%P\n' | LC_ALL=C sort) >"$a/lib/apk/packages/$name.list"
  if [ -s "$c/conffiles" ]; then
    cp "$c/conffiles" "$a/lib/apk/packages/$name.conffiles"
    while read -r f; do
      echo "$f $(sha256sum "$tree$f" | cut -d' ' -f1)"
    done <"$c/conffiles" >"$a/lib/apk/packages/$name.conffiles_static"
  fi
  chmod 0644 "$a"/lib/apk/packages/*
  chmod 0755 "$a/lib" "$a/lib/apk" "$a/lib/apk/packages"
  {
    echo '#!/bin/sh'
    echo 'export PKG_UPGRADE=1'
    tail -n +2 "$c/postinst"
  } >"$work/post-upgrade-$name"
  local deps=() dep
  for dep in "$@"; do deps+=(--depends "$dep"); done
  local apk=$outdir/$name-$version.apk
  python3 "$root/scripts/apk-mkpkg.py" \
    --name "$name" --version "$version" --arch "$aarch" \
    --description "$desc" --license GPL-2.0-or-later \
    --origin "$name" --maintainer "wgroam maintainers" \
    "${deps[@]}" \
    --build-time "$SOURCE_DATE_EPOCH" \
    --script "post-install=$c/postinst" \
    --script "post-upgrade=$work/post-upgrade-$name" \
    --script "pre-deinstall=$c/prerm" \
    --files "$a" --output "$apk.tmp"
  mv -f "$apk.tmp" "$apk"
  echo "package: $apk ($(stat -c %s "$apk") bytes)"
}

mkipk wgroam "$arch" "$data" "$ctl" "$depends" net "$description"
mkapk wgroam "$arch" "$data" "$ctl" "$description" kmod-wireguard wireguard-tools

# luci-app-wgroam: architecture all (apk: noarch), as luci.mk builds it: the
# htdocs tree under /www, root/ as it is; postinst as luci.mk's (drop LuCI's
# caches, SIGHUP rpcd so it reads the new ACL).
luci=$root/openwrt/luci-app-wgroam
ldata=$work/luci-data
install -d -m 0755 "$ldata/www" "$ldata/usr/share/luci/menu.d" "$ldata/usr/share/rpcd/acl.d"
cp -r "$luci/htdocs/." "$ldata/www/"
install -m 0644 "$luci/root/usr/share/luci/menu.d/luci-app-wgroam.json" "$ldata/usr/share/luci/menu.d/"
install -m 0644 "$luci/root/usr/share/rpcd/acl.d/luci-app-wgroam.json" "$ldata/usr/share/rpcd/acl.d/"
find "$ldata" -type d -exec chmod 0755 {} +
find "$ldata" -type f -exec chmod 0644 {} +
lctl=$work/luci-control
mkdir -p "$lctl"
cat >"$lctl/postinst" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT:-0}" = 1 ] && exit 0
[ -n "${IPKG_INSTROOT:-}" ] || {
	rm -f /tmp/luci-indexcache.*
	rm -rf /tmp/luci-modulecache/
	killall -HUP rpcd 2>/dev/null
	exit 0
}
EOF
printf '#!/bin/sh\nexit 0\n' >"$lctl/prerm"
chmod 0755 "$lctl/postinst" "$lctl/prerm"
: >"$lctl/conffiles"
rm -f "$lctl/conffiles"
luci_desc="LuCI support for wgroam: status page (ubus wgroam status) and settings form (/etc/config/wgroam)."
mkipk luci-app-wgroam all "$ldata" "$lctl" "luci-base, wgroam" luci "$luci_desc"
mkapk luci-app-wgroam noarch "$ldata" "$lctl" "$luci_desc" luci-base wgroam

# The feed index opkg reads (what OpenWrt's ipkg-make-index.sh writes): one
# paragraph per .ipk in OUTDIR, its control fields plus Filename, Size and
# SHA256sum; Packages.gz; and with WGROAM_FEED_KEY (a signify secret key
# without passphrase: `signify-openbsd -G -n -p feed.pub -s feed.sec`) the
# signature Packages.sig, which usign (opkg's verifier) accepts: put the
# public key on the router as /etc/opkg/keys/<its 16-hex-digit fingerprint>.
index=$work/Packages
: >"$index"
for ipk in "$outdir"/*.ipk; do
  c=$work/index-control
  rm -rf "$c"
  mkdir -p "$c"
  tar -xzOf "$ipk" ./control.tar.gz | tar -xzf - -C "$c" ./control
  sed -n '/^Description:/q;p' "$c/control" >>"$index"
  {
    echo "Filename: $(basename "$ipk")"
    echo "Size: $(stat -c %s "$ipk")"
    echo "SHA256sum: $(sha256sum "$ipk" | cut -d' ' -f1)"
    sed -n '/^Description:/,$p' "$c/control"
    echo
  } >>"$index"
done
mv -f "$index" "$outdir/Packages"
gzip -9nc "$outdir/Packages" >"$outdir/Packages.gz.tmp"
mv -f "$outdir/Packages.gz.tmp" "$outdir/Packages.gz"
rm -f "$outdir/Packages.sig"
if [ -n "${WGROAM_FEED_KEY:-}" ]; then
  command -v signify-openbsd >/dev/null || die "signify-openbsd missing (Debian package signify-openbsd)"
  signify-openbsd -S -s "$WGROAM_FEED_KEY" -m "$outdir/Packages" -x "$outdir/Packages.sig" ||
    die "cannot sign $outdir/Packages with $WGROAM_FEED_KEY (a signify secret key without passphrase?)"
fi
echo "package: feed index $outdir/Packages ($(grep -c '^Package:' "$outdir/Packages") packages)${WGROAM_FEED_KEY:+, signed}"
