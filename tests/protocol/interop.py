#!/usr/bin/env python3
"""Independent Python side of the checkpoint interop tests (h5py, numpy, torch; no wsm code).

A "reference directory" holds manifest.json = [{"name", "dtype", "shape", "file"}] and one raw
little-endian C-order .bin per tensor. The C++ test writes one next to each checkpoint it saves;
this script writes one next to each checkpoint it creates.

  interop.py write_h5 OUT.h5 REFDIR            h5py file of every dtype/layout h5py users produce
  interop.py write_safetensors OUT REFDIR      safetensors written by hand with numpy (+ metadata)
  interop.py check_h5 IN.h5 REFDIR META.json   read our file with h5py, compare bit for bit
  interop.py check_safetensors IN REFDIR META.json   numpy reader (and `safetensors` when importable)
"""
import json
import os
import struct
import sys

import numpy as np

NP = {"f32": "<f4", "f64": "<f8", "f16": "<f2", "bf16": "<u2", "i8": "i1", "i16": "<i2", "i32": "<i4",
      "i64": "<i8", "u8": "u1", "u16": "<u2", "u32": "<u4", "u64": "<u8", "bool": "?"}
ST = {"F32": "f32", "F64": "f64", "F16": "f16", "BF16": "bf16", "I8": "i8", "I16": "i16", "I32": "i32",
      "I64": "i64", "U8": "u8", "U16": "u16", "U32": "u32", "U64": "u64", "BOOL": "bool"}


def fail(msg):
    print("interop.py: FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def load_ref(refdir):
    with open(os.path.join(refdir, "manifest.json")) as f:
        manifest = json.load(f)
    out = []
    for e in manifest:
        raw = open(os.path.join(refdir, e["file"]), "rb").read()
        a = np.frombuffer(raw, dtype=NP[e["dtype"]]).reshape(e["shape"])
        out.append((e["name"], e["dtype"], a))
    return out


def save_ref(refdir, tensors):
    os.makedirs(refdir, exist_ok=True)
    manifest = []
    for i, (name, dtype, a) in enumerate(tensors):
        fn = "%d.bin" % i
        with open(os.path.join(refdir, fn), "wb") as f:
            f.write(np.ascontiguousarray(a).astype(NP[dtype], copy=False).tobytes())
        manifest.append({"name": name, "dtype": dtype, "shape": list(a.shape), "file": fn})
    with open(os.path.join(refdir, "manifest.json"), "w") as f:
        json.dump(manifest, f)


def same_bits(a, b):
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def sample_arrays():
    rng = np.random.default_rng(1234)
    f32 = rng.standard_normal((4, 6)).astype(np.float32)
    f32[0, 0] = np.nan
    f32[0, 1] = np.inf
    f32[0, 2] = -0.0
    return [
        ("model.embed.weight", "f32", f32),
        ("model.layers.0.attn.w", "f64", rng.standard_normal((3, 2, 5))),
        ("half", "f16", rng.standard_normal((7,)).astype(np.float16)),
        ("steps", "i64", np.array([1, -2, 2**62], dtype=np.int64)),
        ("mask", "bool", rng.random((2, 3)) > 0.5),
        ("u8", "u8", np.arange(256, dtype=np.uint8)),
        ("i16", "i16", np.array([-32768, 0, 32767], dtype=np.int16)),
        ("u32", "u32", np.array([0, 4294967295], dtype=np.uint32)),
        ("scalar", "f32", np.array(2.5, dtype=np.float32)),
        ("empty", "f32", np.zeros((0, 3), dtype=np.float32)),
    ]


def write_h5(out, refdir):
    import h5py
    arrays = sample_arrays()
    tensors = []
    with h5py.File(out, "w") as f:
        f.attrs["wsm.step"] = np.int64(500)
        f.attrs["wsm.lr"] = 0.003
        f.attrs["wsm.run_id"] = "h5py-run"
        f.attrs["note"] = "written by h5py"
        for name, dtype, a in arrays:
            f.create_dataset(name, data=a)
            tensors.append((name, dtype, a))
        # Layouts h5py users produce: nested groups, big-endian, chunked+gzip, bf16 as uint16.
        g = f.create_group("block").create_group("sub")
        be = np.arange(12, dtype=">f4").reshape(3, 4) / 7
        g.create_dataset("big_endian", data=be)
        tensors.append(("block/sub/big_endian", "f32", be.astype("<f4")))
        gz = rng_f32((50, 9))
        f.create_dataset("gz", data=gz, chunks=(7, 4), compression="gzip", compression_opts=4, shuffle=True)
        tensors.append(("gz", "f32", gz))
        bits = bf16_bits((5, 3))
        d = f.create_dataset("bf16", data=bits)
        d.attrs["wsm_dtype"] = "bf16"
        tensors.append(("bf16", "bf16", bits))
    save_ref(refdir, tensors)


def bf16_bits(shape):
    """bfloat16 bit patterns (float32 truncated to its upper half), without needing torch."""
    return (rng_f32(shape).view(np.uint32) >> 16).astype(np.uint16)


def rng_f32(shape):
    return np.random.default_rng(99).standard_normal(shape).astype(np.float32)


def write_safetensors(out, refdir):
    arrays = sample_arrays()
    arrays.append(("bf16.w", "bf16", bf16_bits((4, 4))))
    inv = {v: k for k, v in ST.items()}
    header = {"__metadata__": {"format": "pt", "wsm.step": "42", "wsm.tokens": "1000000", "wsm.lr": "0.0006",
                               "wsm.run_id": "np-writer", "custom": "value"}}
    blobs, off = [], 0
    # Deliberately not in name order, to check that storage order is kept.
    for name, dtype, a in reversed(arrays):
        b = np.ascontiguousarray(a).astype(NP[dtype], copy=False).tobytes()
        header[name] = {"dtype": inv[dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    save_ref(refdir, list(reversed(arrays)))


def check_meta(got, want, where):
    for k, v in want.items():
        if k == "wsm.lr" and k in got and float(got[k]) == float(v):
            continue
        if got.get(k) != v:
            fail("%s: metadata %s = %r, expected %r" % (where, k, got.get(k), v))


def check_h5(path, refdir, meta_json, with_torch="torch"):
    import h5py
    torch = None
    if with_torch == "torch":
        import torch  # slow to import: only the cases that check the documented one-liner
    want_meta = json.load(open(meta_json))
    with h5py.File(path, "r") as f:
        if int(f.attrs["wsm.format_version"]) != 1:
            fail("format version")
        got_meta = {}
        for k, v in f.attrs.items():
            if k == "wsm.format_version":
                continue
            if isinstance(v, bytes):
                v = v.decode()
            if k in ("wsm.step", "wsm.tokens"):
                v = str(int(v))
            elif k == "wsm.lr":
                v = repr(float(v))
            got_meta[k] = str(v)
        check_meta(got_meta, want_meta, path)
        names = list(f["tensors"].keys())
        ref = load_ref(refdir)
        for name, dtype, want in ref:
            ds_name = name.replace("%", "%25").replace("/", "%2F")
            if ds_name == ".":
                ds_name = "%2E"
            if ds_name not in names:
                fail("%s: no dataset for tensor %r" % (path, name))
            d = f["tensors"][ds_name]
            a = d[()]
            if dtype == "bf16":
                if d.attrs.get("wsm_dtype") not in ("bf16", b"bf16"):
                    fail("%s: %s lacks wsm_dtype=bf16" % (path, name))
                if torch is not None:
                    # The documented one-liner back to torch.bfloat16:
                    t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
                    if t.dtype != torch.bfloat16 or list(t.shape) != list(want.shape):
                        fail("bf16 one-liner")
                    a = t.view(torch.int16).numpy().view(np.uint16)
            elif a.dtype != np.dtype(NP[dtype]).newbyteorder("="):
                fail("%s: %s has numpy dtype %s, expected %s" % (path, name, a.dtype, NP[dtype]))
            if not same_bits(np.asarray(a, dtype=NP[dtype]), want):
                fail("%s: tensor %s differs" % (path, name))
        # Creation order is the checkpoint's order.
        order = []
        group = f["tensors"]
        group.id.links.iterate(lambda n: order.append(n.decode()), idx_type=h5py.h5.INDEX_CRT_ORDER)
        expect = [n.replace("%", "%25").replace("/", "%2F") if n != "." else "%2E" for n, _, _ in ref]
        if order != expect:
            fail("%s: creation order %r != %r" % (path, order, expect))


def read_safetensors_numpy(path):
    """Independent reader of the format: prefix, JSON, offsets, checked like the spec says."""
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    if (8 + n) % 8 != 0:
        fail("%s: data section not 8-byte aligned" % path)
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    out, end = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, en = e["data_offsets"]
        if b != end:
            fail("%s: hole/overlap before %s" % (path, name))
        end = en
        dtype = ST[e["dtype"]]
        out[name] = (dtype, np.frombuffer(data[b:en], dtype=NP[dtype]).reshape(e["shape"]))
    if end != len(data):
        fail("%s: data length %d != %d" % (path, end, len(data)))
    return meta, out


def check_safetensors(path, refdir, meta_json):
    want_meta = json.load(open(meta_json))
    files = [path]
    if os.path.isdir(path):
        idx = json.load(open(os.path.join(path, "model.safetensors.index.json")))
        files = sorted(set(os.path.join(path, f) for f in idx["weight_map"].values()))
        total = 0
    tensors, meta = {}, {}
    for fp in files:
        m, t = read_safetensors_numpy(fp)
        meta.update(m)
        tensors.update(t)
        if os.path.isdir(path):
            for name in t:
                if idx["weight_map"][name] != os.path.basename(fp):
                    fail("weight_map of %s" % name)
                total += t[name][1].nbytes
    if os.path.isdir(path) and idx["metadata"]["total_size"] != total:
        fail("total_size %d != %d" % (idx["metadata"]["total_size"], total))
    if meta.get("format") != "pt":
        fail("%s: __metadata__ lacks format=pt" % path)
    check_meta(meta, want_meta, path)
    ref = load_ref(refdir)
    if set(tensors) != set(n for n, _, _ in ref):
        fail("%s: tensor names %r" % (path, sorted(tensors)))
    for name, dtype, want in ref:
        got_dtype, a = tensors[name]
        if got_dtype != dtype or not same_bits(a, want):
            fail("%s: tensor %s differs (%s vs %s)" % (path, name, got_dtype, dtype))
    try:
        import torch
        from safetensors import safe_open  # optional: only when the PyPI package is installed
    except ImportError:
        print("interop.py: safetensors package not installed; numpy reader only")
        return
    # The package's numpy frontend for every dtype numpy has; torch's for bf16 only (Debian's torch
    # 1.13 has no uint16/32/64, which newer safetensors maps unsigned tensors to).
    for fp in files:
        with safe_open(fp, framework="np") as f_np, safe_open(fp, framework="pt") as f_pt:
            for name in f_np.keys():
                if tensors[name][0] == "bf16":
                    got = f_pt.get_tensor(name).reshape(-1).view(torch.uint8).numpy().tobytes()
                else:
                    got = np.ascontiguousarray(f_np.get_tensor(name)).tobytes()
                if got != np.ascontiguousarray(tensors[name][1]).tobytes():
                    fail("safetensors package disagrees on %s" % name)


def main():
    cmd = sys.argv[1]
    {"write_h5": write_h5, "write_safetensors": write_safetensors, "check_h5": check_h5,
     "check_safetensors": check_safetensors}[cmd](*sys.argv[2:])


if __name__ == "__main__":
    main()
