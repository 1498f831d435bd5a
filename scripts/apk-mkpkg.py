#!/usr/bin/env python3
"""Writes an apk v3 package (the ADB format of apk-tools 3, used by OpenWrt
25.12 and later) from a directory tree, like `apk mkpkg` does, with the
Python standard library only. Unsigned: install it with
`apk add --allow-untrusted FILE.apk`.

Format (apk-tools doc/apk-v3.5 and src/adb.h, src/apk_adb.h, app_mkpkg.c):
  "ADBd" + raw deflate of:
    file header   "ADB." + u32 schema ("pckg")
    ADB block     u32 (type 0 << 30 | 4 + len), payload, zero pad to 8
                  payload: adb_hdr {u8 compat 0, u8 ver 0, u16 0, u32 root}
                  followed by the values the root object refers to
    DATA blocks   one per non-empty regular file, in path/file order:
                  u32 (type 2 << 30 | 4 + 8 + size), u32 path index,
                  u32 file index (1-based), the file's bytes, pad to 8
  A value is a u32: type in the high 4 bits, an immediate integer or the
  offset (from the start of the ADB payload) of its data in the low 28.
  Blobs carry a u8/u16/u32 length (aligned to its size); objects and arrays
  are u32 vectors (aligned to 4) whose slot 0 is the number of slots.
All integers are little-endian. Everything here is deterministic.
"""

import argparse
import hashlib
import os
import re
import stat
import struct
import sys
import zlib

SCHEMA_PACKAGE = 0x676B6370  # "pckg"

T_INT, T_INT32, T_INT64 = 0x10000000, 0x20000000, 0x30000000
T_BLOB8, T_BLOB16, T_BLOB32 = 0x80000000, 0x90000000, 0xA0000000
T_ARRAY, T_OBJECT = 0xD0000000, 0xE0000000
NULL = 0

BLOCK_ADB, BLOCK_DATA = 0, 2

# Field indices (src/apk_adb.h).
PI_NAME, PI_VERSION, PI_HASHES, PI_DESCRIPTION, PI_ARCH = 1, 2, 3, 4, 5
PI_LICENSE, PI_ORIGIN, PI_MAINTAINER, PI_URL = 6, 7, 8, 9
PI_BUILD_TIME, PI_INSTALLED_SIZE, PI_DEPENDS = 0x0B, 0x0C, 0x0F
DEP_NAME = 1
ACL_MODE, ACL_USER, ACL_GROUP = 1, 2, 3
FI_NAME, FI_ACL, FI_SIZE, FI_MTIME, FI_HASHES = 1, 2, 3, 4, 5
DI_NAME, DI_ACL, DI_FILES = 1, 2, 3
PKG_PKGINFO, PKG_PATHS, PKG_SCRIPTS = 1, 2, 3
SCRIPTS = {
    "trigger": 1,
    "pre-install": 2,
    "post-install": 3,
    "pre-deinstall": 4,
    "post-deinstall": 5,
    "pre-upgrade": 6,
    "post-upgrade": 7,
}

VERSION_RE = re.compile(
    r"^[0-9]+(\.[0-9]+)*[a-z]?(_(alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*(-r[0-9]+)?$"
)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.-]*$")


class Adb:
    """The ADB block's payload, built bottom-up like apk's adb_w_* calls."""

    def __init__(self):
        self.buf = bytearray(8)  # struct adb_hdr; root filled in by finish()

    def _put(self, data, align):
        self.buf += b"\0" * (-len(self.buf) % align)
        off = len(self.buf)
        if off > 0x0FFFFFFF:
            raise ValueError("ADB block too large")
        self.buf += data
        return off

    def blob(self, data):
        if not data:
            return NULL
        n = len(data)
        if n > 0xFFFF:
            return T_BLOB32 | self._put(struct.pack("<I", n) + data, 4)
        if n > 0xFF:
            return T_BLOB16 | self._put(struct.pack("<H", n) + data, 2)
        return T_BLOB8 | self._put(struct.pack("<B", n) + data, 1)

    def int(self, v):
        if v < 0x10000000:
            return T_INT | v
        if v < 1 << 32:
            return T_INT32 | self._put(struct.pack("<I", v), 4)
        return T_INT64 | self._put(struct.pack("<Q", v), 4)

    def _vector(self, slots, kind):
        n = len(slots)
        while n > 1 and slots[n - 1] == NULL:
            n -= 1
        if n <= 1:
            return NULL
        slots = [n] + list(slots[1:n])
        return kind | self._put(struct.pack("<%dI" % n, *slots), 4)

    def obj(self, fields):
        """fields: {index: value}; unset slots are NULL."""
        slots = [0] * (max(fields, default=0) + 1)
        for i, v in fields.items():
            slots[i] = v
        return self._vector(slots, T_OBJECT)

    def arr(self, values):
        return self._vector([0] + [v for v in values if v != NULL], T_ARRAY)

    def finish(self, root):
        struct.pack_into("<BBHI", self.buf, 0, 0, 0, 0, root)
        return bytes(self.buf)


def block(kind, payload):
    raw = 4 + len(payload)
    if raw > 0x3FFFFFFF:
        raise ValueError("block too large for a plain block header")
    return struct.pack("<I", (kind << 30) | raw) + payload + b"\0" * (-raw % 8)


def scan(root):
    """Directories (relative names, "" for the root, sorted as apk sorts
    blobs) with their regular files, like mkpkg's directory walk."""
    dirs = [""]
    for cur, subdirs, _ in os.walk(root):
        for d in subdirs:
            dirs.append(os.path.relpath(os.path.join(cur, d), root))
    dirs.sort(key=lambda s: s.encode())
    out = []
    for d in dirs:
        full = os.path.join(root, d)
        files = []
        for name in sorted(os.listdir(full), key=lambda s: s.encode()):
            p = os.path.join(full, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                raise SystemExit(
                    "apk-mkpkg: %s: only regular files and directories are supported" % p
                )
            files.append((name, p, st))
        out.append((d, os.lstat(full), files))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--description", default="")
    ap.add_argument("--license", default="")
    ap.add_argument("--origin", default="")
    ap.add_argument("--maintainer", default="")
    ap.add_argument("--url", default="")
    ap.add_argument("--depends", action="append", default=[])
    ap.add_argument("--build-time", type=int, default=0)
    ap.add_argument(
        "--script", action="append", default=[], metavar="TYPE=FILE",
        help="e.g. post-install=postinst; types: " + ", ".join(SCRIPTS),
    )
    ap.add_argument("--files", required=True, help="the installed tree")
    ap.add_argument("--output", required=True)
    a = ap.parse_args()

    if not NAME_RE.match(a.name):
        sys.exit("apk-mkpkg: invalid package name %r" % a.name)
    if not VERSION_RE.match(a.version):
        sys.exit("apk-mkpkg: version %r is not valid for apk; expected e.g. 0.1.0-r1" % a.version)
    for d in a.depends:
        if not NAME_RE.match(d):
            sys.exit("apk-mkpkg: invalid dependency %r (names only)" % d)

    db = Adb()
    mtime = a.build_time

    def acl(mode):
        return db.obj({
            ACL_MODE: db.int(mode & 0o7777),
            ACL_USER: db.blob(b"root"),
            ACL_GROUP: db.blob(b"root"),
        })

    installed = 0
    paths = []
    contents = []  # (path index, file index, path) for the DATA blocks
    for pi, (dname, dst, files) in enumerate(scan(a.files), start=1):
        fvals = []
        for fi, (name, path, st) in enumerate(files, start=1):
            with open(path, "rb") as f:
                data = f.read()
            installed += len(data)
            fvals.append(db.obj({
                FI_NAME: db.blob(name.encode()),
                FI_ACL: acl(st.st_mode),
                FI_SIZE: db.int(len(data)),
                FI_MTIME: db.int(mtime),
                FI_HASHES: db.blob(hashlib.sha256(data).digest()),
            }))
            if data:
                contents.append((pi, fi, path))
        paths.append(db.obj({
            DI_NAME: db.blob(dname.encode()),
            DI_ACL: acl(dst.st_mode),
            DI_FILES: db.arr(fvals),
        }))

    deps = [db.obj({DEP_NAME: db.blob(d.encode())}) for d in sorted(set(a.depends), key=str.encode)]
    # The package's unique id: 20 bytes, zero while the block is hashed.
    uid = db.blob(b"\0" * 20)
    info = {
        PI_NAME: db.blob(a.name.encode()),
        PI_VERSION: db.blob(a.version.encode()),
        PI_HASHES: uid,
        PI_DESCRIPTION: db.blob(a.description.encode()),
        PI_ARCH: db.blob(a.arch.encode()),
        PI_LICENSE: db.blob(a.license.encode()),
        PI_ORIGIN: db.blob(a.origin.encode()),
        PI_MAINTAINER: db.blob(a.maintainer.encode()),
        PI_URL: db.blob(a.url.encode()),
        PI_BUILD_TIME: db.int(a.build_time) if a.build_time else NULL,
        PI_INSTALLED_SIZE: db.int(max(installed, 1)),
        PI_DEPENDS: db.arr(deps),
    }
    pkg = {PKG_PKGINFO: db.obj(info), PKG_PATHS: db.arr(paths)}
    if a.script:
        scripts = {}
        for s in a.script:
            kind, _, path = s.partition("=")
            if kind not in SCRIPTS or not path:
                sys.exit("apk-mkpkg: bad --script %r; expected TYPE=FILE with TYPE one of %s"
                         % (s, ", ".join(SCRIPTS)))
            with open(path, "rb") as f:
                scripts[SCRIPTS[kind]] = db.blob(f.read())
        pkg[PKG_SCRIPTS] = db.obj(scripts)
    adb = bytearray(db.finish(db.obj(pkg)))
    uid_off = (uid & 0x0FFFFFFF) + 1
    adb[uid_off:uid_off + 20] = hashlib.sha256(adb).digest()[:20]

    out = [b"ADB.", struct.pack("<I", SCHEMA_PACKAGE), block(BLOCK_ADB, bytes(adb))]
    for pi, fi, path in contents:
        with open(path, "rb") as f:
            out.append(block(BLOCK_DATA, struct.pack("<II", pi, fi) + f.read()))
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = b"ADBd" + z.compress(b"".join(out)) + z.flush()
    with open(a.output, "wb") as f:
        f.write(packed)


if __name__ == "__main__":
    main()
