#!/usr/bin/env python3
"""Reads an apk v3 (ADB) package the way apk-tools' reader does and prints
its metadata as JSON; with --extract DIR also writes the files. Fails with a
one-line reason on anything apk would reject: wrong magic or schema, a block
of the wrong type or order, a value pointing outside the ADB block, a
misaligned value, unsorted paths or files, a DATA block for an unexpected
file, a size or sha256 mismatch, a file without its data.

Written independently of scripts/apk-mkpkg.py from apk-tools' src/adb.c,
src/apk_adb.c and src/extract_v3.c so the two check each other.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import zlib

SCHEMA_PACKAGE = 0x676B6370


class Bad(Exception):
    pass


def need(cond, why):
    if not cond:
        raise Bad(why)


class Reader:
    def __init__(self, adb):
        self.adb = adb

    def _at(self, off, size):
        need(off + size <= len(self.adb), "value at %d+%d runs past the ADB block (%d)" % (off, size, len(self.adb)))
        return self.adb[off:off + size]

    def kind(self, v):
        return v & 0xF0000000

    def int(self, v):
        t, x = self.kind(v), v & 0x0FFFFFFF
        if v == 0:
            return None
        if t == 0x10000000:
            return x
        if t == 0x20000000:
            need(x % 4 == 0, "int32 at %d not aligned" % x)
            return struct.unpack("<I", self._at(x, 4))[0]
        if t == 0x30000000:
            need(x % 4 == 0, "int64 at %d not aligned" % x)
            return struct.unpack("<Q", self._at(x, 8))[0]
        raise Bad("expected an integer, got type %#x" % t)

    def blob(self, v):
        t, x = self.kind(v), v & 0x0FFFFFFF
        if v == 0:
            return None
        for typ, fmt, n in ((0x80000000, "<B", 1), (0x90000000, "<H", 2), (0xA0000000, "<I", 4)):
            if t == typ:
                need(x % n == 0, "blob at %d not aligned to %d" % (x, n))
                ln = struct.unpack(fmt, self._at(x, n))[0]
                return self._at(x + n, ln)
        raise Bad("expected a blob, got type %#x" % t)

    def slots(self, v, want):
        t, x = self.kind(v), v & 0x0FFFFFFF
        if v == 0:
            return [1]
        need(t == want, "expected %s, got type %#x" % ("object" if want == 0xE0000000 else "array", t))
        need(x % 4 == 0, "vector at %d not aligned" % x)
        n = struct.unpack("<I", self._at(x, 4))[0]
        need(n >= 1, "vector at %d has no slots" % x)
        return list(struct.unpack("<%dI" % n, self._at(x, 4 * n)))

    def obj(self, v):
        s = self.slots(v, 0xE0000000)
        return lambda i: s[i] if i < len(s) else 0

    def arr(self, v):
        return self.slots(v, 0xD0000000)[1:]


def text(b):
    return None if b is None else b.decode()


def parse(path, extract=None):
    raw = open(path, "rb").read()
    need(raw[:3] == b"ADB", "not an apk v3 file (magic %r)" % raw[:4])
    if raw[3:4] == b"d":
        try:
            data = zlib.decompress(raw[4:], -15)
        except zlib.error as e:
            raise Bad("deflate stream broken: %s" % e)
    elif raw[3:4] == b".":
        data = raw
    else:
        raise Bad("unsupported compression %r" % raw[3:4])
    need(data[:4] == b"ADB.", "inner header magic %r" % data[:4])
    schema = struct.unpack("<I", data[4:8])[0]
    need(schema == SCHEMA_PACKAGE, "schema %#x is not 'pckg'" % schema)

    blocks = []
    pos = 8
    while pos < len(data):
        need(pos + 4 <= len(data), "truncated block header at %d" % pos)
        ts = struct.unpack("<I", data[pos:pos + 4])[0]
        typ, rawsize = ts >> 30, ts & 0x3FFFFFFF
        need(typ != 3, "extended blocks are not expected here")
        need(rawsize >= 4, "block at %d shorter than its header" % pos)
        size = (rawsize + 7) & ~7
        need(pos + size <= len(data), "block at %d runs past the end" % pos)
        need(data[pos + rawsize:pos + size] == b"\0" * (size - rawsize), "non-zero block padding at %d" % pos)
        blocks.append((typ, data[pos + 4:pos + rawsize]))
        pos += size
    need(blocks and blocks[0][0] == 0, "first block is not the ADB block")
    need(all(t in (1, 2) for t, _ in blocks[1:]), "a second ADB block")
    seen_data = False
    for t, _ in blocks[1:]:
        need(not (seen_data and t == 1), "SIG block after DATA")
        seen_data = seen_data or t == 2
    adb = blocks[0][1]
    need(len(adb) >= 16, "ADB block too short")
    compat, ver, _res, root = struct.unpack("<BBHI", adb[:8])
    need(compat == 0, "adb_compat_ver %d" % compat)
    r = Reader(adb)

    pkg = r.obj(root)
    info = r.obj(pkg(1))
    uid = r.blob(info(3))
    need(uid is not None and len(uid) == 20, "package unique id missing or not 20 bytes")
    zeroed = bytearray(adb)
    uoff = (info(3) & 0x0FFFFFFF) + 1
    zeroed[uoff:uoff + 20] = b"\0" * 20
    need(hashlib.sha256(zeroed).digest()[:20] == uid, "unique id is not the sha256 of the ADB block")

    deps = []
    for d in r.arr(info(0x0F)):
        dep = r.obj(d)
        deps.append({"name": text(r.blob(dep(1))), "version": text(r.blob(dep(2))), "match": r.int(dep(3))})
    names = [d["name"].encode() for d in deps]
    need(names == sorted(names), "depends not sorted")

    def acl(v):
        a = r.obj(v)
        return {"mode": "%04o" % (r.int(a(1)) or 0), "user": text(r.blob(a(2))), "group": text(r.blob(a(3)))}

    paths = []
    expect = []  # (path idx, file idx, entry) needing a DATA block
    for pi, pv in enumerate(r.arr(pkg(2)), start=1):
        p = r.obj(pv)
        name = text(r.blob(p(1))) or ""
        files = []
        for fi, fv in enumerate(r.arr(p(3)), start=1):
            f = r.obj(fv)
            h = r.blob(f(5))
            need(h is not None and len(h) == 32, "%s/%s: sha256 missing" % (name, text(r.blob(f(1)))))
            e = {
                "name": text(r.blob(f(1))),
                "acl": acl(f(2)),
                "size": r.int(f(3)) or 0,
                "mtime": r.int(f(4)),
                "sha256": h.hex(),
            }
            files.append(e)
            if e["size"]:
                expect.append((pi, fi, name, e))
        fnames = [f["name"].encode() for f in files]
        need(fnames == sorted(fnames), "files of '%s' not sorted" % name)
        paths.append({"name": name, "acl": acl(p(2)), "files": files})
    pnames = [p["name"].encode() for p in paths]
    need(pnames == sorted(pnames), "paths not sorted")

    datas = [b for t, b in blocks if t == 2]
    need(len(datas) == len(expect), "%d DATA blocks for %d files with content" % (len(datas), len(expect)))
    for (pi, fi, dname, e), blk in zip(expect, datas):
        hp, hf = struct.unpack("<II", blk[:8])
        need((hp, hf) == (pi, fi), "DATA block for %d/%d where %d/%d was due" % (hp, hf, pi, fi))
        content = blk[8:]
        need(len(content) == e["size"], "%s/%s: %d bytes of data, size says %d" % (dname, e["name"], len(content), e["size"]))
        need(hashlib.sha256(content).hexdigest() == e["sha256"], "%s/%s: sha256 mismatch" % (dname, e["name"]))
        if extract:
            d = os.path.join(extract, dname)
            os.makedirs(d, exist_ok=True)
            out = os.path.join(d, e["name"])
            with open(out, "wb") as fh:
                fh.write(content)
            os.chmod(out, int(e["acl"]["mode"], 8))

    scripts = {}
    names = ["trigger", "pre-install", "post-install", "pre-deinstall", "post-deinstall", "pre-upgrade", "post-upgrade"]
    s = r.obj(pkg(3))
    for i, n in enumerate(names, start=1):
        b = r.blob(s(i))
        if b is not None:
            scripts[n] = b.decode()

    return {
        "name": text(r.blob(info(1))),
        "version": text(r.blob(info(2))),
        "description": text(r.blob(info(4))),
        "arch": text(r.blob(info(5))),
        "license": text(r.blob(info(6))),
        "origin": text(r.blob(info(7))),
        "maintainer": text(r.blob(info(8))),
        "build_time": r.int(info(0x0B)),
        "installed_size": r.int(info(0x0C)),
        "depends": deps,
        "paths": paths,
        "scripts": scripts,
        "signed": any(t == 1 for t, _ in blocks),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("apk")
    ap.add_argument("--extract", metavar="DIR")
    a = ap.parse_args()
    try:
        meta = parse(a.apk, a.extract)
    except Bad as e:
        sys.exit("apk-inspect: %s: %s" % (a.apk, e))
    json.dump(meta, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
