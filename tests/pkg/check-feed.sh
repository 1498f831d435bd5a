#!/usr/bin/env bash
# Checks a feed directory written by scripts/package.sh (WGROAM_FEED_KEY set):
#
#   tests/pkg/check-feed.sh DIR PUBLIC_KEY
#
# Packages names every .ipk in DIR once, with its control fields and the
# right Filename, Size and SHA256sum; Packages.gz is Packages; Packages.sig
# verifies with PUBLIC_KEY (signify-openbsd -V, the format usign reads: both
# files are base64 of "Ed" + the 8-byte key number (+ 32-byte key | 64-byte
# signature), with one "untrusted comment:" line), and a Packages changed by
# one byte does not.
# Closing line: "pkg-feed: N passed, N failed".
set -euo pipefail

[ "$#" -eq 2 ] || {
  echo "usage: tests/pkg/check-feed.sh DIR PUBLIC_KEY" >&2
  exit 2
}
dir=$(realpath "$1")
pub=$(realpath "$2")
passed=0 failed=0
ok() {
  passed=$((passed + 1))
  echo "ok: $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL: $*"
}
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check "Packages, Packages.gz and Packages.sig exist" test -s "$dir/Packages" -a -s "$dir/Packages.gz" -a -s "$dir/Packages.sig"
check "Packages.gz is Packages" cmp -s <(gzip -dc "$dir/Packages.gz") "$dir/Packages"

# Every paragraph against its file; every .ipk has one.
python3 - "$dir" >"$tmp/index.out" <<'EOF' || true
import hashlib, io, os, sys, tarfile
d = sys.argv[1]
paras = [p for p in open(os.path.join(d, "Packages")).read().split("\n\n") if p.strip()]
seen = set()
bad = 0
for p in paras:
    f = dict(l.split(": ", 1) for l in p.splitlines() if ": " in l)
    fn = f.get("Filename", "")
    path = os.path.join(d, fn)
    if not fn or not os.path.isfile(path):
        print(f"FAIL {fn}: no such file"); bad += 1; continue
    seen.add(fn)
    data = open(path, "rb").read()
    if int(f.get("Size", -1)) != len(data):
        print(f"FAIL {fn}: Size {f.get('Size')} != {len(data)}"); bad += 1
    if f.get("SHA256sum") != hashlib.sha256(data).hexdigest():
        print(f"FAIL {fn}: SHA256sum mismatch"); bad += 1
    outer = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    ctl = tarfile.open(fileobj=outer.extractfile("./control.tar.gz"), mode="r:gz")
    control = ctl.extractfile("./control").read().decode()
    c = dict(l.split(": ", 1) for l in control.splitlines() if ": " in l)
    for k, v in c.items():
        if f.get(k) != v:
            print(f"FAIL {fn}: {k} is {f.get(k)!r} in Packages, {v!r} in the package"); bad += 1
    print(f"ok {fn}: {f['Package']} {f['Version']} {f['Architecture']}")
for fn in sorted(os.listdir(d)):
    if fn.endswith(".ipk") and fn not in seen:
        print(f"FAIL {fn}: not in Packages"); bad += 1
sys.exit(1 if bad else 0)
EOF
cat "$tmp/index.out"
check "Packages matches every .ipk (fields, Filename, Size, SHA256sum) and lists each" \
  sh -c '! grep -q "^FAIL" "$1" && grep -q "^ok" "$1"' sh "$tmp/index.out"

# The usign format.
b64() { sed -n 2p "$1" | base64 -d | od -An -tx1 -v | tr -d ' \n'; }
check "public key: one untrusted comment line + base64 of Ed + key number + 32-byte key" \
  sh -c 'head -n1 "$1" | grep -q "^untrusted comment: " && [ "$(sed -n 2p "$1" | base64 -d | wc -c)" = 42 ]' sh "$pub"
check "signature: one untrusted comment line + base64 of Ed + key number + 64-byte signature" \
  sh -c 'head -n1 "$1" | grep -q "^untrusted comment: " && [ "$(sed -n 2p "$1" | base64 -d | wc -c)" = 74 ] && [ "$(wc -l <"$1")" = 2 ]' sh "$dir/Packages.sig"
fp=$(b64 "$pub" | cut -c5-20)
check "signature names the key's fingerprint $fp (/etc/opkg/keys/$fp on the router)" \
  test "$(b64 "$dir/Packages.sig" | cut -c1-20)" = "4564$fp"
check "Packages.sig verifies with the public key" \
  signify-openbsd -V -q -p "$pub" -m "$dir/Packages" -x "$dir/Packages.sig"
cp "$dir/Packages" "$tmp/Packages"
printf 'Z' | dd of="$tmp/Packages" bs=1 seek=20 conv=notrunc status=none
check "a Packages changed by one byte does not verify" \
  sh -c '! signify-openbsd -V -q -p "$1" -m "$2" -x "$3" 2>/dev/null' sh "$pub" "$tmp/Packages" "$dir/Packages.sig"

echo "pkg-feed: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
