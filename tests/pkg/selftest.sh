#!/usr/bin/env bash
# Proves the package checks can fail: breaks good packages in ways a real
# packaging bug would, and expects tests/pkg/check-packages.sh (and the apk
# reader) to reject each one.
#
#   tests/pkg/selftest.sh IPK APK
#
# Closing line: "pkg-selftest: N passed, N failed".
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ "$#" -eq 2 ] || {
  echo "usage: tests/pkg/selftest.sh IPK APK" >&2
  exit 2
}
ipk=$(realpath "$1")
apk=$(realpath "$2")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0 failed=0
expect_reject() { # expect_reject WHAT PATTERN IPK APK
  local what=$1 pattern=$2 out rc=0
  out=$("$here/check-packages.sh" "$3" "$4" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] && grep -q -- "^FAIL: .*$pattern" <<<"$out"; then
    passed=$((passed + 1))
    echo "ok: rejected: $what"
  else
    failed=$((failed + 1))
    echo "FAIL: not rejected: $what (exit $rc)"
    grep '^FAIL' <<<"$out" | sed 's/^/    /' || true
  fi
}

# repack_ipk NAME EDIT: unpacks the good ipk, runs EDIT in its data/control
# trees ($1 = data, $2 = control), packs it again as NAME.
repack_ipk() {
  local edit=$2 w=$tmp/$1
  mkdir -p "$w/outer" "$w/data" "$w/control"
  tar -xzf "$ipk" -C "$w/outer"
  tar -xzf "$w/outer/data.tar.gz" -C "$w/data"
  tar -xzf "$w/outer/control.tar.gz" -C "$w/control"
  (cd "$w" && eval "$edit")
  (cd "$w/data" && tar --owner=0 --group=0 -czf ../outer/data.tar.gz .)
  (cd "$w/control" && tar --owner=0 --group=0 -czf ../outer/control.tar.gz .)
  mkdir -p "$w/pkg"
  (cd "$w/outer" && tar -czf "$w/pkg/$(basename "$ipk")" ./debian-binary ./data.tar.gz ./control.tar.gz)
  echo "$w/pkg/$(basename "$ipk")"
}

expect_reject "config not a conffile" "conffiles lists" \
  "$(repack_ipk noconf ': >control/conffiles')" "$apk"
expect_reject "init script without respawn" "procd respawn" \
  "$(repack_ipk norespawn "sed -i '/respawn/d' data/etc/init.d/wgroam")" "$apk"
expect_reject "hotplug reacting to every action" "other actions" \
  "$(repack_ipk allactions "sed -i 's/^ifup | ifdown | ifupdate) ;;/*) ;;/' data/etc/hotplug.d/iface/95-wgroam")" "$apk"
expect_reject "hotplug forking (pid via cat)" "forks nothing" \
  "$(repack_ipk forks "sed -i 's/read -r pid <\"\$wgroam_pidfile\" || return 0/pid=\$(cat \"\$wgroam_pidfile\")/' data/etc/hotplug.d/iface/95-wgroam")" "$apk"
expect_reject "world-readable config" "etc/config/wgroam mode" \
  "$(repack_ipk mode 'chmod 644 data/etc/config/wgroam')" "$apk"
expect_reject "uci-defaults overwriting the role" "shipped config alone" \
  "$(repack_ipk overwrite "sed -i 's/^\\t_wgroam_uci -q commit wgroam/\\t_wgroam_uci -q set wgroam.agent.role=hub\\n&/' data/etc/uci-defaults/50-wgroam")" "$apk"
expect_reject "prerm not noting a running agent before an opkg upgrade" "opkg upgrade of a running agent the user disabled" \
  "$(repack_ipk nomarker "sed -i 's#/etc/init.d/wgroam running \&\& : >/tmp/wgroam.upgrade-was-running#:#' control/prerm")" "$apk"
expect_reject "postinst ignoring IPKG_INSTROOT" "image build" \
  "$(repack_ipk instroot "sed -i 's#\"\$root/etc/init.d/wgroam\" enable#/etc/init.d/wgroam enable#' control/postinst")" "$apk"

# apk corruptions, made with the same reader's knowledge of the format.
mkapk() { # mkapk NAME PYTHON-EDIT-OF-BLOCKS
  python3 - "$apk" "$tmp/$1.apk" "$2" <<'EOF'
import struct, sys, zlib
src, dst, edit = sys.argv[1:4]
data = zlib.decompress(open(src, "rb").read()[4:], -15)
blocks, pos = [], 8
while pos < len(data):
    ts = struct.unpack("<I", data[pos:pos + 4])[0]
    raw = ts & 0x3FFFFFFF
    blocks.append(bytearray(data[pos:pos + ((raw + 7) & ~7)]))
    pos += (raw + 7) & ~7
exec(edit)
z = zlib.compressobj(9, zlib.DEFLATED, -15)
open(dst, "wb").write(b"ADBd" + z.compress(data[:8] + b"".join(blocks)) + z.flush())
EOF
  echo "$tmp/$1.apk"
}
expect_reject "apk with a corrupted file byte" "sha256 mismatch" \
  "$ipk" "$(mkapk flip 'blocks[-1][20] ^= 0xff')"
expect_reject "apk with DATA blocks out of order" "was due" \
  "$ipk" "$(mkapk order 'blocks[1], blocks[2] = blocks[2], blocks[1]')"
expect_reject "apk with a changed ADB block (unique id no longer matches)" "unique id" \
  "$ipk" "$(mkapk adb 'blocks[0][blocks[0].find(b"maintainers")] ^= 0x20')"
expect_reject "apk missing a DATA block" "DATA blocks for" \
  "$ipk" "$(mkapk drop 'del blocks[-1]')"

echo "pkg-selftest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
