#!/usr/bin/env bash
# Checks the luci-app-wgroam packages built by scripts/package.sh:
#
#   tests/pkg/check-luci.sh IPK APK
#
# Layout (the files luci.mk installs: htdocs under /www, root/ as is), modes,
# control fields (Architecture all, apk arch noarch, Depends luci-base and
# wgroam, version as wgroam's), that both packages carry the same files and
# that these are the repository's, that the JSON files parse, and the
# postinst (luci.mk's: LuCI caches dropped, rpcd told to reload its ACLs; an
# image build does nothing).
# Closing line: "pkg-luci: N passed, N failed"; exit 1 if anything failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
[ "$#" -eq 2 ] || {
  echo "usage: tests/pkg/check-luci.sh IPK APK" >&2
  exit 2
}
ipk=$(realpath "$1")
apk=$(realpath "$2")
app=$root/openwrt/luci-app-wgroam

passed=0 failed=0
ok() {
  passed=$((passed + 1))
  echo "ok: $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL: $*"
}
check() { # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
if command -v busybox >/dev/null && busybox sh -c true 2>/dev/null; then SH=(busybox sh); else SH=(dash); fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "pkg-luci: checking $(basename "$ipk") and $(basename "$apk")"

mkdir -p "$tmp/ipk" "$tmp/data" "$tmp/control"
outer=$(tar -tzf "$ipk" | tr '\n' ' ')
check "ipk holds ./debian-binary ./data.tar.gz ./control.tar.gz" \
  test "$outer" = "./debian-binary ./data.tar.gz ./control.tar.gz "
tar -xzf "$ipk" -C "$tmp/ipk"
tar -xzf "$tmp/ipk/data.tar.gz" -C "$tmp/data"
tar -xzf "$tmp/ipk/control.tar.gz" -C "$tmp/control"
data=$tmp/data ctl=$tmp/control

# What luci.mk installs from the app directory.
want=$( (cd "$app/htdocs" && find . -type f -printf 'www/%P\n') ; (cd "$app/root" && find . -type f -printf '%P\n'))
want=$(sort <<<"$want" | tr '\n' ' ')
files=$(cd "$data" && find . -type f -printf '%P\n' | sort | tr '\n' ' ')
check "ipk installs exactly the app's htdocs (under /www) and root/: $want" test "$files" = "$want"
same=1
for f in $files; do
  src=$app/htdocs/${f#www/}
  [ "${f#www/}" != "$f" ] || src=$app/root/$f
  cmp -s "$data/$f" "$src" || same=0
done
check "ipk files are the repository's" test "$same" = 1
modes=$( (cd "$data" && find . -type f -printf '%m\n') | sort -u | tr '\n' ' ')
check "files are 644 ($modes)" test "$modes" = "644 "
dmodes=$( (cd "$data" && find . -type d -printf '%m\n') | sort -u | tr '\n' ' ')
check "directories are 755 ($dmodes)" test "$dmodes" = "755 "
owners=$(tar -tzvf "$tmp/ipk/data.tar.gz" | awk '{print $2}' | sort -u | tr '\n' ' ')
check "owned by 0/0 ($owners)" test "$owners" = "0/0 "
for j in usr/share/luci/menu.d/luci-app-wgroam.json usr/share/rpcd/acl.d/luci-app-wgroam.json; do
  check "/$j parses as JSON" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$data/$j"
done

field() { sed -n "s/^$1: //p" "$ctl/control"; }
version=$(field Version)
check "control Package luci-app-wgroam" test "$(field Package)" = luci-app-wgroam
check "control Architecture all" test "$(field Architecture)" = all
check "control Version $version is wgroam's (scripts/version.sh)" test "$version" = "$("$root/scripts/version.sh")"
check "file name" test "$(basename "$ipk")" = "luci-app-wgroam_${version}_all.ipk"
check "control Depends: luci-base, wgroam" test "$(field Depends)" = "luci-base, wgroam"
check "control Section luci" test "$(field Section)" = luci
check "no conffiles" test ! -e "$ctl/conffiles"
for s in postinst prerm; do
  check "control/$s is executable and parses" sh -c '[ -x "$1" ] && shift && "$@" -n "$0"' "$ctl/$s" "$ctl/$s" "${SH[@]}"
done

# postinst on a router: as luci.mk's; in an image build: nothing. rm and
# killall are recorded (shell functions: busybox sh runs its own applets
# before PATH).
post() {
  : >"$tmp/calls"
  env "$@" CALLS="$tmp/calls" "${SH[@]}" -c 'rm() { echo "rm $*" >>"$CALLS"; }
killall() { echo "killall $*" >>"$CALLS"; }
. "$1"' post "$ctl/postinst"
  tr '\n' ' ' <"$tmp/calls"
}
check "postinst on a router: drops LuCI's caches, SIGHUP to rpcd (new ACL)" \
  test "$(post)" = "rm -f /tmp/luci-indexcache.* rm -rf /tmp/luci-modulecache/ killall -HUP rpcd "
check "postinst in an image build does nothing" test "$(post IPKG_INSTROOT="$tmp/root")" = ""

# The .apk: same files, noarch, same version and dependencies.
if python3 "$here/apk-inspect.py" "$apk" --extract "$tmp/apkdata" >"$tmp/apk.json" 2>"$tmp/apk.err"; then
  ok "apk parses as apk v3 (ADB)"
  jq_() { python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$tmp/apk.json" "$1"; }
  check "apk name, version, arch noarch" test "$(jq_ 'm["name"]+" "+m["version"]+" "+m["arch"]')" = "luci-app-wgroam $version noarch"
  check "apk file name as the 25.12 SDK names it" test "$(basename "$apk")" = "luci-app-wgroam-$version.apk"
  check "apk depends luci-base wgroam" test "$(jq_ '" ".join(d["name"] for d in m["depends"])')" = "luci-base wgroam"
  apk_files=$(cd "$tmp/apkdata" && find . -type f -printf '%P\n' | grep -v '^lib/apk/packages/' | sort | tr '\n' ' ')
  check "apk carries the ipk's files" test "$apk_files" = "$files"
  same=1
  for f in $files; do cmp -s "$data/$f" "$tmp/apkdata/$f" || same=0; done
  check "apk file contents equal the ipk's" test "$same" = 1
  check "apk lists its files in lib/apk/packages/luci-app-wgroam.list" \
    test "$(tr '\n' ' ' <"$tmp/apkdata/lib/apk/packages/luci-app-wgroam.list")" = "$(for f in $files; do echo "/$f"; done | LC_ALL=C sort | tr '\n' ' ')"
else
  fail "apk does not parse: $(cat "$tmp/apk.err")"
fi

echo "pkg-luci: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
