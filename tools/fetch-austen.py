#!/usr/bin/env python3
"""Fetch Jane Austen's six novels from Debian's r-cran-janeaustenr and cache them as plain text.

The package stores each novel as an R character vector (one element per line), serialized in R's
XDR format and zlib-compressed inside data/Rdata.rdb, indexed by data/Rdata.rdx. Installing the
package would pull all of R, so we `apt-get download` the .deb, unpack it with `dpkg-deb -x`, and
decode the blocks here with zlib + struct.

Writes <out>/austen/{train.txt, val.txt, all.txt}:
  train.txt  Emma, Mansfield Park, Northanger Abbey, Pride and Prejudice, Sense and Sensibility
  val.txt    Persuasion (held out)
  all.txt    all six in the documented order, checked against the sha256 pinned below (ALL_SHA256)
Each novel is its lines joined with '\n'; novels are separated by one blank line ('\n\n'), which is
the joining that reproduces the pinned checksum (4,025,033 bytes, 81 distinct characters).

Usage: tools/fetch-austen.py [--out data/cache] [--deb-cache DIR]
"""
import argparse
import glob
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

ALL_SHA256 = "ae4140c6e5ab543cc81f68358120258f0935ac9e27a30f44a7a564b349307867"
ORDER = ["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"]
VAL = ["persuasion"]
PACKAGE = "r-cran-janeaustenr"


class RReader:
    """A minimal reader of R's XDR serialization: enough for vectors, lists and pairlists."""

    def __init__(self, data):
        self.d, self.p, self.refs = data, 0, []
        if self.d[:2] != b"X\n":
            raise ValueError("not an R XDR stream")
        self.p = 2
        version = self.int()
        self.int()  # writer's R version
        self.int()  # minimal reader version
        if version == 3:
            n = self.int()
            self.p += n  # native encoding name

    def int(self):
        (v,) = struct.unpack_from(">i", self.d, self.p)
        self.p += 4
        return v

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind == 254:  # NILVALUE_SXP
            return None
        if kind in (242, 251, 252, 253):  # empty env, missing arg, base env, unbound value
            return None
        if kind == 255:  # REFSXP
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if kind == 1:  # SYMSXP
            sym = self.item()
            self.refs.append(sym)
            return sym
        if kind == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.d[self.p:self.p + n]
            self.p += n
            return s
        if kind in (2, 1026):  # LISTSXP (pairlist): attributes, tag, car, cdr
            out = {}
            node_kind = kind
            while node_kind == 2:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out[tag.decode() if tag else len(out)] = self.item()
                flags = self.int()
                node_kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
            if node_kind != 254:
                raise ValueError("unsupported pairlist tail %d" % node_kind)
            return out
        if kind in (10, 13):  # LGLSXP, INTSXP
            n = self.int()
            v = list(struct.unpack_from(">%di" % n, self.d, self.p))
            self.p += 4 * n
        elif kind == 14:  # REALSXP
            n = self.int()
            v = list(struct.unpack_from(">%dd" % n, self.d, self.p))
            self.p += 8 * n
        elif kind == 16:  # STRSXP
            n = self.int()
            v = [self.item() for _ in range(n)]
        elif kind == 19:  # VECSXP
            n = self.int()
            v = [self.item() for _ in range(n)]
        else:
            raise ValueError("unsupported R SEXP type %d" % kind)
        if has_attr:
            attrs = self.item()
            names = attrs.get("names") if isinstance(attrs, dict) else None
            if kind == 19 and names:
                return {nm.decode(): x for nm, x in zip(names, v)}
        return v


def block(rdb, offset=0, length=None):
    """One .rdb block: 4-byte big-endian uncompressed length, then a zlib stream. The .rdx index is
    the same kind of block in older R, a gzip file (saveRDS) in newer ones."""
    raw = rdb[offset:offset + length] if length is not None else rdb
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    (n,) = struct.unpack_from(">I", raw, 0)
    out = zlib.decompress(raw[4:])
    if len(out) != n:
        raise ValueError("block length mismatch: %d != %d" % (len(out), n))
    return out


def fetch_deb(deb_cache):
    os.makedirs(deb_cache, exist_ok=True)
    debs = sorted(glob.glob(os.path.join(deb_cache, PACKAGE + "_*.deb")))
    if debs:
        return debs[-1]
    r = subprocess.run(["apt-get", "download", PACKAGE], cwd=deb_cache, capture_output=True, text=True)
    debs = sorted(glob.glob(os.path.join(deb_cache, PACKAGE + "_*.deb")))
    if r.returncode != 0 or not debs:
        sys.exit("fetch-austen: `apt-get download %s` failed (run `apt-get update` first?):\n%s" % (PACKAGE, r.stderr))
    return debs[-1]


def write_atomic(path, data):
    tmp = path + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(root, "data", "cache"), help="cache root (default data/cache)")
    ap.add_argument("--deb-cache", default=None, help="where the .deb is kept (default <out>/debs)")
    args = ap.parse_args()
    out_dir = os.path.join(args.out, "austen")
    deb = fetch_deb(args.deb_cache or os.path.join(args.out, "debs"))

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        found = glob.glob(os.path.join(tmp, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx"))
        if not found:
            sys.exit("fetch-austen: no janeaustenr/data/Rdata.rdx inside %s" % deb)
        rdx_path = found[0]
        with open(rdx_path, "rb") as f:
            index = RReader(block(f.read())).item()
        with open(rdx_path[:-4] + ".rdb", "rb") as f:
            rdb = f.read()

    novels = {}
    for name in ORDER:
        off, length = index["variables"][name]
        lines = RReader(block(rdb, off, length)).item()
        novels[name] = b"\n".join(x if x is not None else b"" for x in lines)

    sep = b"\n\n"
    all_txt = sep.join(novels[n] for n in ORDER)
    digest = hashlib.sha256(all_txt).hexdigest()
    if digest != ALL_SHA256:
        sys.exit("fetch-austen: all.txt sha256 %s != pinned %s (package changed?)" % (digest, ALL_SHA256))
    os.makedirs(out_dir, exist_ok=True)
    write_atomic(os.path.join(out_dir, "train.txt"), sep.join(novels[n] for n in ORDER if n not in VAL))
    write_atomic(os.path.join(out_dir, "val.txt"), sep.join(novels[n] for n in VAL))
    write_atomic(os.path.join(out_dir, "all.txt"), all_txt)
    print("fetch-austen: wrote %s (all.txt %d bytes, sha256 ok)" % (out_dir, len(all_txt)))


if __name__ == "__main__":
    main()
