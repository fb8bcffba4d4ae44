#!/usr/bin/env python3
"""`wsm merge` under MPI (merger_mpi_merge): the same merge run as 1 process, and under
`mpirun -np 2` and `-np 3`, must give byte-identical outputs in every output format (Hugging Face
directory, sharded directory, one safetensors file, HDF5) and dtype, equal to an independent
numpy float64 reference; a rank that fails leaves no output and every rank exits non-zero with its
message. Inputs are written here with numpy/h5py; outputs are read back with Hugging Face's
`safetensors` package and h5py, never with wsm.

usage: mpi_merge_test.py WSM MPIRUN WORKDIR
"""
import glob
import json
import os
import shutil
import struct
import subprocess
import sys

import h5py
import numpy as np
from safetensors import safe_open
import safetensors.numpy as stnp

WSM, MPIRUN, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
MPI_FLAGS = ["--oversubscribe", "--allow-run-as-root"]
RNG = np.random.default_rng(15)
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run(ranks, args, expect_ok=True):
    """`wsm merge ARGS` as one plain process (ranks=0) or under mpirun -np ranks."""
    cmd = [WSM, "merge"] + args
    if ranks:
        cmd = [MPIRUN] + MPI_FLAGS + ["-np", str(ranks)] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if expect_ok and p.returncode != 0:
        print(" ".join(cmd), "\n", p.stdout, p.stderr)
    return p


# ---- inputs -----------------------------------------------------------------------------------
def bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (numpy has no bfloat16)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors, meta):
    """A safetensors file written by hand (bf16 included), tensors as (dtype, array of raw dtype)."""
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, (dt, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def model_tensors(step, dtype):
    """One tensor larger than any rank's share, many tiny ones (uneven splits), an integer counter."""
    def floats(shape):
        x = RNG.standard_normal(shape).astype(np.float32)
        return ("BF16", bf16_bits(x)) if dtype == "bf16" else ("F32", x)
    t = {"model.embed.weight": floats((700, 1001))}
    for i in range(37):
        t[f"model.layers.{i}.norm.weight"] = floats((i % 5 + 1,))
    t["model.layers.0.attn.weight"] = floats((64, 63))
    t["lm_head.weight"] = floats((300, 1001))
    t["step_counter"] = ("I64", np.array([step, 3 * step], np.int64))
    return t


def values(dt, arr):
    return bf16_value(arr).astype(np.float64) if dt == "BF16" else arr.astype(np.float64)


def make_hf_dir(path, step, tensors):
    """A Hugging Face model directory: two shards + index (as save_pretrained writes), config files."""
    os.makedirs(path)
    names = list(tensors)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for k, part in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-00002.safetensors"
        write_safetensors(os.path.join(path, fname), {n: tensors[n] for n in part}, {"format": "pt"})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
    # Every input's config differs, so the test sees which one was copied (the newest).
    files = {"config.json": {"model_type": "llama", "from_step": step},
             "generation_config.json": {"do_sample": False, "from_step": step},
             "tokenizer_config.json": {"model_max_length": 128, "from_step": step},
             "special_tokens_map.json": {"bos_token": "<s>"}}
    for name, content in files.items():
        with open(os.path.join(path, name), "w") as f:
            json.dump(content, f)
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        f.write('{"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}, "step": %d}' % step)
    with open(os.path.join(path, "optimizer.pt"), "wb") as f:  # trainer state: never copied
        f.write(b"\0" * 64)


def reference(inputs, weights):
    """float64 weighted sum of every float tensor (with the sum of |w x| for the error bound);
    integer tensors from the newest input."""
    ref = {}
    for name, (dt, arr) in inputs[-1].items():
        if dt == "I64":
            ref[name] = (arr, None)
            continue
        terms = [w * values(inp[name][0], inp[name][1]) for w, inp in zip(weights, inputs)]
        ref[name] = (sum(terms), sum(np.abs(t) for t in terms))
    return ref


def close_to(got, want, k, out_eps=2.0 ** -24):
    """got (from the output) against the float64 reference: an f32 accumulation of k terms,
    (2k+3) eps_f32 sum|w x|, plus one rounding to the output dtype (relative out_eps)."""
    acc, absacc = want
    bound = (2 * k + 3) * 2.0 ** -24 * absacc + out_eps * np.abs(acc) + 2.0 ** -133
    return bool(np.all(np.abs(got.astype(np.float64) - acc) <= bound))


def read_dir_with_safetensors(d):
    """Every tensor of a sharded directory, read by Hugging Face's safetensors (bf16 as raw bits)."""
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        index = json.load(f)
    out = {}
    for fname in sorted(set(index["weight_map"].values())):
        with open(os.path.join(d, fname), "rb") as f:  # bf16: numpy has no type; decode the header
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        bf16 = {k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "BF16"}
        if not bf16:
            out.update(stnp.load_file(os.path.join(d, fname)))
            continue
        for k in bf16:
            a, b = header[k]["data_offsets"]
            out[k] = np.frombuffer(data[a:b], np.uint16).reshape(header[k]["shape"])
        with safe_open(os.path.join(d, fname), framework="numpy") as st:
            for k in st.keys():
                if k not in bf16:
                    out[k] = st.get_tensor(k)
    return index, out


def same_tree(a, b):
    fa = sorted(os.path.relpath(p, a) for p in glob.glob(a + "/**", recursive=True))
    fb = sorted(os.path.relpath(p, b) for p in glob.glob(b + "/**", recursive=True))
    if fa != fb:
        return False
    for rel in fa:
        pa, pb = os.path.join(a, rel), os.path.join(b, rel)
        if os.path.isfile(pa) and open(pa, "rb").read() != open(pb, "rb").read():
            print("  differs:", rel)
            return False
    return True


def same_file(a, b):
    return open(a, "rb").read() == open(b, "rb").read()


def no_leftovers(parent):
    left = [p for p in os.listdir(parent) if ".tmp-" in p or ".old-" in p]
    if left:
        print("  left behind:", left)
    return not left


# ---- 1. Hugging Face model directories -> a loadable Hugging Face directory --------------------
def test_hf_directories():
    base = os.path.join(WORK, "hf")
    inputs = []
    for step in (100, 200, 300):
        t = model_tensors(step, "f32")
        make_hf_dir(os.path.join(base, f"checkpoint-{step}"), step, t)
        inputs.append(t)
    dirs = [os.path.join(base, f"checkpoint-{s}") for s in (100, 200, 300)]
    outs = {}
    for ranks in (0, 2, 3):
        out = os.path.join(base, f"out-np{ranks}")
        p = run(ranks, ["--shape", "linear", "--shard-size", "1MB", "--out", out] + dirs)
        check(p.returncode == 0, f"HF dirs -> HF dir, {ranks or 1} rank(s): exit 0")
        outs[ranks] = out
    for ranks in (2, 3):
        check(same_tree(outs[0], outs[ranks]), f"HF dir output: -np {ranks} byte-identical to one process")
    out = outs[0]
    shards = sorted(f for f in os.listdir(out) if f.endswith(".safetensors"))
    n = len(shards)
    check(n >= 3 and shards == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)],
          f"shards named model-0000k-of-0000N.safetensors ({n} of them, --shard-size 1MB)")
    # Hugging Face's rule: tensors in order, a new shard when the next would pass the size (a larger
    # tensor alone in its own).
    expected, used = [[]], 0
    for name, (dt, arr) in inputs[-1].items():
        if expected[-1] and used + arr.nbytes > 1_000_000:
            expected.append([])
            used = 0
        expected[-1].append(name)
        used += arr.nbytes
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        wm = json.load(f)["weight_map"]
    check(len(expected) == n and all(wm[t] == shards[k] for k, part in enumerate(expected) for t in part),
          "tensors placed in shards of at most --shard-size 1MB, in order, as Hugging Face does")
    for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        check(same_file(os.path.join(out, name), os.path.join(dirs[-1], name)),
              f"{name} copied from the newest input")
    with open(os.path.join(out, "config.json")) as a, open(os.path.join(dirs[-1], "config.json")) as b:
        check(json.load(a) == dict(json.load(b), torch_dtype="float32", dtype="float32"),
              "config.json the newest input's, its dtype the one written (F32 inputs, F32 output)")
    check(not os.path.exists(os.path.join(out, "optimizer.pt")), "trainer state (optimizer.pt) not copied")
    index, got = read_dir_with_safetensors(out)
    check(set(index["weight_map"]) == set(inputs[-1]), "index weight_map names every tensor")
    meta = index["metadata"]
    sources = json.loads(meta.get("wsm.provenance", "{}")).get("sources", [])
    check([os.path.basename(s["path"]) for s in sources] == ["checkpoint-100", "checkpoint-200", "checkpoint-300"],
          "index metadata holds the merge provenance (sources, oldest first)")
    check(meta.get("total_size") == sum(v.nbytes for v in got.values()), "index total_size = tensor bytes")
    ref = reference(inputs, [1 / 3] * 3)
    ok = all(close_to(got[k], ref[k], 3) for k in ref if ref[k][1] is not None)
    check(ok, "merged values (read by safetensors) match the float64 mean")
    check(np.array_equal(got["step_counter"], inputs[-1]["step_counter"][1]), "integer tensor copied from the newest")
    try:
        import transformers  # noqa: F401  (only when CI installed it: then the directory must load)
        cfg = transformers.AutoConfig.from_pretrained(out)
        check(cfg.model_type == "llama", "transformers.AutoConfig loads the output directory")
    except ImportError:
        print("     (transformers not installed: the directory is checked with safetensors and json)")


# ---- 2. formats and dtypes: 1 process == -np 2 == -np 3, several shapes at once ----------------
def test_formats_and_dtypes():
    base = os.path.join(WORK, "formats")
    os.makedirs(base)
    for in_dtype in ("f32", "bf16"):
        inputs, files = [], []
        for step in (10, 20, 30, 40):
            t = model_tensors(step, in_dtype)
            path = os.path.join(base, f"{in_dtype}-step{step}.safetensors")
            write_safetensors(path, t, {"wsm.step": str(step)})
            inputs.append(t)
            files.append(path)
        for out_form in ("dir", "safetensors", "h5"):
            for out_dtype in (["bf16", "f32"] if out_form != "h5" else ["f16"]):
                outs = {}
                for ranks in (0, 2, 3):
                    d = os.path.join(base, f"{in_dtype}-{out_form}-{out_dtype}-np{ranks}")
                    os.makedirs(d)
                    args = ["--shape", "linear,1-sqrt", "--dtype", out_dtype]
                    if out_form == "dir":
                        args += ["--shard-size", "300KB", "--out", os.path.join(d, "m")]
                    else:
                        args += ["--out", os.path.join(d, "m-{shape}." + out_form)]
                    p = run(ranks, args + files)
                    check(p.returncode == 0, f"{in_dtype} -> {out_form} {out_dtype}, {ranks or 1} rank(s): exit 0")
                    outs[ranks] = d
                for ranks in (2, 3):
                    check(same_tree(outs[0], outs[ranks]),
                          f"{in_dtype} inputs -> {out_form} {out_dtype}: -np {ranks} byte-identical to one process")
                if out_form == "h5":  # values, read by h5py, against the reference
                    w = [0.25] * 4
                    with h5py.File(os.path.join(outs[0], "m-linear.h5"), "r") as f:
                        got = f["tensors"]["model.embed.weight"][()]
                    want = reference(inputs, w)["model.embed.weight"]
                    check(got.dtype == np.float16 and close_to(got, want, 4, 2.0 ** -11),
                          f"{in_dtype} -> h5 f16: values read by h5py match the float64 mean")
                if out_form == "dir" and out_dtype == "bf16":  # bf16 bits decoded here
                    _, got = read_dir_with_safetensors(os.path.join(outs[0], "m", "1-sqrt"))
                    with open(os.path.join(outs[0], "m", "1-sqrt", "model.safetensors.index.json")) as f:
                        w = [s["weight"] for s in json.loads(json.load(f)["metadata"]["wsm.provenance"])["sources"]]
                    want = reference(inputs, w)
                    check(all(close_to(bf16_value(got[k]), want[k], 4, 2.0 ** -8) for k in want if want[k][1] is not None),
                          f"{in_dtype} -> bf16 1-sqrt directory: values match the float64 reference")


# ---- 3. uneven splits: a model smaller than one aligned piece, on 3 ranks ---------------------
def test_tiny_model():
    base = os.path.join(WORK, "tiny")
    os.makedirs(base)
    files, inputs = [], []
    for step in (1, 2):
        t = {f"t{i}": ("F32", RNG.standard_normal(i + 1).astype(np.float32)) for i in range(5)}
        path = os.path.join(base, f"s{step}.safetensors")
        write_safetensors(path, t, {"wsm.step": str(step)})
        files.append(path)
        inputs.append(t)
    for ranks in (0, 3):
        p = run(ranks, ["--out", os.path.join(base, f"np{ranks}.safetensors")] + files)
        check(p.returncode == 0, f"15-element model on {ranks or 1} rank(s) (ranks with no work): exit 0")
    check(same_file(os.path.join(base, "np0.safetensors"), os.path.join(base, "np3.safetensors")),
          "tiny model: -np 3 byte-identical to one process")
    p = run(0, ["--shard-size", "1MB", "--out", os.path.join(base, "x.safetensors")] + files, expect_ok=False)
    check(p.returncode != 0 and "--shard-size writes a directory" in p.stderr
          and not os.path.exists(os.path.join(base, "x.safetensors")),
          "--shard-size with a file output: an error naming the problem, nothing written")
    got = stnp.load_file(os.path.join(base, "np3.safetensors"))
    ref = reference(inputs, [0.5, 0.5])
    check(all(close_to(got[k], ref[k], 2) for k in ref), "tiny model values match the float64 mean")


# ---- 4. a failing rank: no output, every rank non-zero with its message -----------------------
def test_failing_rank():
    base = os.path.join(WORK, "fail")
    good, bad = os.path.join(base, "good"), os.path.join(base, "bad")
    os.makedirs(good)
    os.makedirs(bad)
    n = 1 << 20
    for step in (1, 2, 3):
        x = RNG.standard_normal(n).astype(np.float32)
        for d in (good, bad):
            with h5py.File(os.path.join(d, f"ckpt{step}.h5"), "w") as f:
                f.create_dataset("w", data=x, chunks=(1 << 16,), compression="gzip")
    # Corrupt the last compressed chunk of one input in bad/: only the rank whose share holds the
    # end of the tensor reads it, after every output has been laid out.
    path = os.path.join(bad, "ckpt2.h5")
    with h5py.File(path, "r") as f:
        info = f["w"].id.get_chunk_info(f["w"].id.get_num_chunks() - 1)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset)
        f.write(b"\xff" * info.size)
    out = os.path.join(WORK, "fail", "merged.safetensors")

    def mpmd(second_inputs):
        cmd = [MPIRUN] + MPI_FLAGS + ["-np", "1", WSM, "merge", "--out", out] + [os.path.join(good, f"ckpt{s}.h5") for s in (1, 2, 3)]
        cmd += [":", "-np", "1", WSM, "merge", "--out", out] + second_inputs
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    # a) rank 1 cannot read the inputs' data mid-merge
    p = mpmd([os.path.join(d, f"ckpt{s}.h5") for d, s in ((good, 1), (bad, 2), (good, 3))])
    text = p.stdout + p.stderr
    check(p.returncode != 0, "rank 1 fails mid-merge: mpirun exits non-zero")
    check(text.count("rank 1 of 2") >= 2 and "ckpt2.h5" in text,
          "both ranks report rank 1's error naming the input")
    check(not os.path.exists(out) and no_leftovers(os.path.dirname(out)),
          "no output and no temporary left after a mid-merge failure")
    # b) rank 1 is given an input it cannot open at all
    missing = os.path.join(bad, "no-such-checkpoint.h5")
    p = mpmd([os.path.join(good, "ckpt1.h5"), missing, os.path.join(good, "ckpt3.h5")])
    text = p.stdout + p.stderr
    check(p.returncode != 0 and text.count("rank 1 of 2") >= 2 and "no-such-checkpoint.h5" in text,
          "rank 1 cannot open an input: every rank exits non-zero with its message")
    check(not os.path.exists(out) and no_leftovers(os.path.dirname(out)), "no output after a failed open")
    # c) the same good inputs on both ranks still work (the failure above was the bad input's)
    p = run(2, ["--out", out] + [os.path.join(good, f"ckpt{s}.h5") for s in (1, 2, 3)])
    check(p.returncode == 0 and os.path.isfile(out), "the good inputs on 2 ranks: merged")


if __name__ == "__main__":
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    test_hf_directories()
    test_formats_and_dtypes()
    test_tiny_model()
    test_failing_rank()
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)
