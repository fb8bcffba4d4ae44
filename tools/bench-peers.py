#!/usr/bin/env python3
"""wsm merge side by side with the tools a user would otherwise pick, on Hugging Face checkpoints.

Writes N Hugging Face Trainer checkpoints (checkpoint-<step>/, a random Llama-style model sized
from a config, bf16, sharded with model.safetensors.index.json; no hub access), then times, in
interleaved rounds with a rotating order:
  floor     cat every input shard > /dev/null, cp the newest checkpoint's shards M times
            (read the inputs once, write the outputs' bytes)
  wsm       wsm merge (one pass for every shape)
  mergekit  mergekit-yaml, linear merge method with wsm's weights, once per shape
  pytorch   the script a user writes: safetensors.safe_open each shard, f32 accumulation,
            cast to bf16, save_file; once per shape
Every tool pays its own fsync (the harness fsyncs each output file before it stops the clock).
Peak RSS comes from wait4() per child. A round during which other processes used more than
--max-other-load cores (from /proc/stat, less the children's own CPU time) is discarded and
redone, up to --max-redo times; after that the busy rounds are kept and the table says so.

Correctness (round 0, untimed): wsm's linear output against mergekit's, bit for bit; every
wsm and PyTorch output against a float64 reference (see check_reference for the bound); wsm's
other shapes against mergekit's, reporting how many elements differ and by how many ulps.

Modes: "one" (a linear merge: M = 1), "three" (--shapes, default linear,1-sqrt,cosine: wsm
merges them in one pass, mergekit and PyTorch run once per shape). Default both.

Runs with the system python3; makes (or reuses) a virtual environment with pinned mergekit and
torch under ~/.cache/wsm/py-venv-peers (tools/python-venv.sh peers) and runs its workers there.
  tools/bench-peers.py --small --rounds 1             # smoke check: seconds once the venv exists
  tools/bench-peers.py                                # 8 x 0.37B bf16 checkpoints, 3 rounds
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from bench_load import busy_seconds  # tools/, the script's own folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("floor", "wsm", "mergekit", "pytorch")
# Fastest mergekit options on a CPU for safetensors inputs (mergekit-yaml --help, mergekit 0.1.5):
# asynchronous shard writes, no tokenizer or model card to copy, no progress bars.
MERGEKIT_FLAGS = ["--no-cuda", "--lazy-unpickle", "--async-write", "--no-copy-tokenizer",
                  "--no-write-model-card", "--quiet"]
SIZES = {  # LlamaConfig fields
    "full": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                 num_attention_heads=16, num_key_value_heads=16),
    "small": dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4),
}


# ---------------------------------------------------------------- safetensors, by hand (numpy)

def write_safetensors(path, tensors, metadata=None):
    """tensors: [(name, 'BF16', shape, uint16 array)]; the format's 8-byte length + JSON header."""
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + data.nbytes]}
        offset += data.nbytes
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data.tobytes())


def read_safetensors(path):
    """{name: (dtype, shape, numpy memmap of the raw bytes as uint16/uint32...)}"""
    import numpy as np
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        out[name] = (h["dtype"], tuple(h["shape"]), raw[b:e])
    return out


def read_model_dir(d):
    """Every tensor of a Hugging Face model directory (index + shards, or one model.safetensors)."""
    index = os.path.join(d, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index)
             else ["model.safetensors"])
    out = {}
    for f in files:
        out.update(read_safetensors(os.path.join(d, f)))
    return out


def bf16_to_f64(raw):
    import numpy as np
    return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even f32 -> bf16 bits (no NaNs in these inputs)."""
    import numpy as np
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16).astype(np.uint16)


# ---------------------------------------------------------------- workers (run in the venv)

def worker_generate(args):
    """N checkpoint-<step> folders of a random Llama model: config.json from transformers'
    LlamaConfig, tensor names and shapes from LlamaForCausalLM on the meta device (no memory)."""
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(**SIZES[args.size], tie_word_embeddings=False, torch_dtype="bfloat16",
                         architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    names = [(n, tuple(t.shape)) for n, t in model.state_dict().items()]
    total = sum(int(np.prod(s)) for _, s in names)
    # Shards of about equal bytes, tensors in order (as Hugging Face's save_pretrained cuts them).
    per_shard, shards, current, size = -(-total // args.shards), [], [], 0
    for name, shape in names:
        current.append((name, shape))
        size += int(np.prod(shape))
        if size >= per_shard and len(shards) < args.shards - 1:
            shards.append(current)
            current, size = [], 0
    shards.append(current)
    for i in range(args.count):
        step = (i + 1) * 1000
        d = os.path.join(args.dir, f"checkpoint-{step}")
        os.makedirs(d, exist_ok=True)
        config.to_json_file(os.path.join(d, "config.json"))
        rng = np.random.default_rng([args.seed, i])
        weight_map = {}
        for s, shard in enumerate(shards):
            fname = f"model-{s + 1:05d}-of-{len(shards):05d}.safetensors"
            tensors = []
            for name, shape in shard:
                x = rng.standard_normal(int(np.prod(shape)), dtype=np.float32) * np.float32(0.02)
                if name.endswith("norm.weight"):
                    x += np.float32(1.0)
                tensors.append((name, "BF16", shape, f32_to_bf16_bits(x)))
                weight_map[name] = fname
            write_safetensors(os.path.join(d, fname), tensors, {"format": "pt"})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total * 2}, "weight_map": weight_map}, f, indent=2)
        with open(os.path.join(d, "trainer_state.json"), "w") as f:
            json.dump({"global_step": step}, f)
    print(json.dumps({"params": total, "shards": len(shards)}))


def worker_torch_merge(args):
    """The merge script a PyTorch user writes (timed as the 'pytorch' peer)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    inputs, weights = args.inputs, [float(w) for w in args.weights.split(",")]
    index = json.load(open(os.path.join(inputs[0], "model.safetensors.index.json")))
    os.makedirs(args.out, exist_ok=True)
    for shard in sorted(set(index["weight_map"].values())):
        files = [safe_open(os.path.join(d, shard), framework="pt") for d in inputs]
        merged = {}
        for name in files[0].keys():
            acc = None
            for f, w in zip(files, weights):
                x = w * f.get_tensor(name).to(torch.float32)
                acc = x if acc is None else acc.add_(x)
            merged[name] = acc.to(torch.bfloat16)
        save_file(merged, os.path.join(args.out, shard), metadata={"format": "pt"})
    shutil.copy(os.path.join(inputs[0], "model.safetensors.index.json"), args.out)
    shutil.copy(os.path.join(inputs[-1], "config.json"), args.out)


def check_reference(out_dirs, inputs, weights):
    """Each bf16 output element y against r = sum_j w_j x_j in float64 (w the double weights).
    Any f32-accumulating merge rounds w_j to f32 (rel. error 2^-24) and makes at most 2K further
    f32 roundings (products and sums, or K FMAs), each within 2^-24 sum_j |w_j x_j|; then one
    rounding to bf16 (half an ulp of y). So |y - r| <= ulp_bf16(y)/2 + (2K+1) 2^-24 sum|w x|.
    Also counts the elements that are not r correctly rounded (the bound allows them: an f32
    error can move r across a bf16 rounding midpoint). One reference for several outputs."""
    import numpy as np
    outs = [read_model_dir(d) for d in out_dirs]
    ins = [read_model_dir(d) for d in inputs]
    k = len(inputs)
    res = [{"elements": 0, "worst_error_over_bound": 0.0, "not_correctly_rounded": 0} for _ in outs]
    for name in outs[0]:
        ref = np.zeros(outs[0][name][2].size // 2)
        mag = np.zeros_like(ref)
        for w, src in zip(weights, ins):
            wx = w * bf16_to_f64(src[name][2])
            ref += wx
            mag += np.abs(wx)
        nearest = f32_to_bf16_bits(ref)
        for out, r in zip(outs, res):
            dtype, _, raw = out[name]
            assert dtype == "BF16", (name, dtype)
            y = bf16_to_f64(raw)
            ulp = np.ldexp(1.0, np.frexp(np.maximum(np.abs(y), 2.0**-126))[1] - 8)
            bound = ulp / 2 + (2 * k + 1) * 2.0**-24 * mag
            r["worst_error_over_bound"] = max(r["worst_error_over_bound"],
                                              float(np.max(np.abs(y - ref) / bound)))
            r["not_correctly_rounded"] += int(np.count_nonzero(raw.view(np.uint16) != nearest))
            r["elements"] += y.size
    for r in res:
        r["ok"] = r["worst_error_over_bound"] <= 1.0
    return res


def compare_bits(a_dir, b_dir):
    """How many elements differ between two outputs, and the largest difference (absolute, and
    relative to the larger magnitude: ulps would mislead near cancellation, where both values
    are tiny against their terms)."""
    import numpy as np
    a, b = read_model_dir(a_dir), read_model_dir(b_dir)
    if set(a) != set(b):
        return {"ok": False, "error": "tensor names differ"}
    n, diff, max_abs, max_rel = 0, 0, 0.0, 0.0
    for name, (dtype, shape, raw) in a.items():
        if b[name][:2] != (dtype, shape):
            return {"ok": False, "error": f"{name}: dtype or shape differs"}
        x, y = raw.view(np.uint16), b[name][2].view(np.uint16)
        n += x.size
        d = x != y
        if d.any():
            diff += int(np.count_nonzero(d))
            fx, fy = bf16_to_f64(raw[np.repeat(d, 2)]), bf16_to_f64(b[name][2][np.repeat(d, 2)])
            max_abs = max(max_abs, float(np.max(np.abs(fx - fy))))
            max_rel = max(max_rel, float(np.max(np.abs(fx - fy) / np.maximum(np.abs(fx), np.abs(fy)))))
    return {"ok": diff == 0, "elements": n, "differ": diff, "max_abs_diff": max_abs,
            "max_rel_diff": max_rel}


def worker_check(args):
    job = json.loads(args.job)
    if job["kind"] == "reference":
        print(json.dumps(check_reference(job["outs"], job["inputs"], job["weights"])))
    else:
        print(json.dumps(compare_bits(job["a"], job["b"])))


# ---------------------------------------------------------------- the harness (system python)

def venv_python(args):
    if args.venv_python:
        return args.venv_python
    venv = os.path.join(os.environ.get("WSM_VENV_CACHE", os.path.expanduser("~/.cache/wsm")),
                        "py-venv-peers")
    subprocess.run(["bash", os.path.join(ROOT, "tools", "python-venv.sh"), "peers", venv],
                   check=True, stdout=sys.stderr)
    return os.path.join(venv, "bin", "python")


def fsync_tree(path):
    for d, _, files in os.walk(path):
        for f in files:
            fd = os.open(os.path.join(d, f), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


def timed(cmds, outs):
    """Runs the commands one after the other, fsyncs the outputs; wall seconds, peak RSS (MB) of
    the largest child, and the cores other processes kept busy meanwhile."""
    busy0, t0, cpu, rss = busy_seconds(), time.perf_counter(), 0.0, 0
    for cmd in cmds:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = p.stderr.read()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            sys.exit(f"bench-peers: {cmd[0]} failed ({p.returncode}):\n{stderr.decode()[-3000:]}")
        cpu += ru.ru_utime + ru.ru_stime
        rss = max(rss, ru.ru_maxrss)
    for o in outs:
        fsync_tree(o)
    wall = time.perf_counter() - t0
    other = max(0.0, busy_seconds() - busy0 - cpu) / wall
    return {"seconds": wall, "rss_mb": rss / 1024, "other_load": other}


class Bench:
    def __init__(self, args, py):
        self.args, self.py = args, py
        self.data = os.path.join(args.data_dir, "wsm-bench-peers")
        self.ckpts = [os.path.join(self.data, "in", f"checkpoint-{(i + 1) * 1000}")
                      for i in range(args.count)]
        self.out = os.path.join(self.data, "out")
        self.weights = {}

    def worker(self, *argv):
        r = subprocess.run([self.py, os.path.abspath(__file__), *argv], check=True,
                           stdout=subprocess.PIPE, text=True)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def generate(self):
        a = self.args
        stamp = os.path.join(self.data, "in", "stamp.json")
        want = {"size": a.size, "count": a.count, "shards": a.shards, "seed": a.seed}
        if os.path.exists(stamp) and json.load(open(stamp)).get("want") == want:
            return json.load(open(stamp))["made"]
        shutil.rmtree(self.data, ignore_errors=True)
        os.makedirs(os.path.join(self.data, "in"))
        t0 = time.perf_counter()
        made = self.worker("_generate", "--dir", os.path.join(self.data, "in"), "--size", a.size,
                           "--count", str(a.count), "--shards", str(a.shards), "--seed", str(a.seed))
        made["bytes"] = sum(os.path.getsize(os.path.join(d, f)) for d in self.ckpts
                            for f in os.listdir(d) if f.endswith(".safetensors"))
        print(f"wrote {a.count} checkpoints x {made['params'] / 1e6:.1f}M params x "
              f"{made['shards']} bf16 shards, {made['bytes'] / 1e9:.2f} GB, in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
        json.dump({"want": want, "made": made}, open(stamp, "w"))
        return made

    def shape_weights(self, shape):
        if shape not in self.weights:
            r = subprocess.run([self.args.wsm, "weights", "--shape", shape, "--count",
                                str(self.args.count), "--json"], check=True,
                               stdout=subprocess.PIPE, text=True)
            self.weights[shape] = json.loads(r.stdout)["weights"]
        return self.weights[shape]

    def mergekit_config(self, shape):
        path = os.path.join(self.data, f"mergekit-{shape}.yml")
        # normalize: false: the weights already sum to 1 in double; mergekit would divide by their
        # f32 sum, which is not exactly 1 for most shapes. Models oldest first, as wsm orders them.
        lines = ["merge_method: linear", "dtype: bfloat16", "out_dtype: bfloat16",
                 "parameters:", "  normalize: false", "models:"]
        for d, w in zip(self.ckpts, self.shape_weights(shape)):
            lines += [f"  - model: {d}", "    parameters:", f"      weight: {w!r}"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def commands(self, tool, shapes, out):
        """(commands, output dirs, {shape: output dir})"""
        a = self.args
        if tool == "wsm":
            dirs = {s: os.path.join(out, s) for s in shapes} if len(shapes) > 1 else {shapes[0]: out}
            return ([[a.wsm, "merge", "--shape", ",".join(shapes), "--out", out, *self.ckpts]],
                    [out], dirs)
        if tool == "floor":
            shards = [os.path.join(d, f) for d in self.ckpts for f in sorted(os.listdir(d))
                      if f.endswith(".safetensors")]
            newest = [os.path.join(self.ckpts[-1], f) for f in sorted(os.listdir(self.ckpts[-1]))
                      if f.endswith(".safetensors")]
            copies = " && ".join(f'mkdir -p "$0/{i}" && cp "$@" "$0/{i}/"'
                                 for i in range(len(shapes)))
            script = f'cat {" ".join(shards)} > /dev/null && {copies}'
            return [["sh", "-c", script, out, *newest]], [out], {}
        dirs = {s: os.path.join(out, s) for s in shapes}
        if tool == "mergekit":
            mk = os.path.join(os.path.dirname(self.py), "mergekit-yaml")
            cmds = [[mk, self.mergekit_config(s), dirs[s], *MERGEKIT_FLAGS] for s in shapes]
        else:
            cmds = [[self.py, os.path.abspath(__file__), "_torch_merge", "--out", dirs[s],
                     "--weights", ",".join(repr(w) for w in self.shape_weights(s)), *self.ckpts]
                    for s in shapes]
        return cmds, [out], dirs

    def check_bits(self, mode, shape, wsm_dir, peer, peer_dir, results):
        """Against mergekit a requirement; against the PyTorch script (which rounds each product to
        f32 before adding it, where wsm and torch's addcmul fuse them) a figure only."""
        r = self.worker("_check", "--job", json.dumps({"kind": "bits", "a": wsm_dir, "b": peer_dir}))
        r = {"mode": mode, "what": f"wsm {shape} vs {peer} {shape}, bits", **r}
        if peer == "pytorch":
            r.update(ok=True, informational=True)
        self.record(results, r)

    def check_reference(self, mode, shape, dirs, results):
        """dirs: {tool: output dir}, checked against one float64 reference."""
        rs = self.worker("_check", "--job", json.dumps({
            "kind": "reference", "outs": list(dirs.values()), "inputs": self.ckpts,
            "weights": self.shape_weights(shape)}))
        for tool, r in zip(dirs, rs):
            self.record(results, {"mode": mode, "what": f"{tool} {shape} vs float64 reference", **r})

    @staticmethod
    def record(results, r):
        results.append(r)
        print(f"  check {r['what']}: {'ok' if r['ok'] else 'DIFFERS'} {json.dumps(r)}",
              file=sys.stderr)

    def run_mode(self, mode, shapes, checks):
        a = self.args
        rounds, discarded, r = [], [], 0
        while len(rounds) < a.rounds:
            order = TOOLS[r % len(TOOLS):] + TOOLS[:r % len(TOOLS)]
            if r == 0:  # wsm before its peers, so they can be checked against it
                order = ("floor", "wsm", "mergekit", "pytorch")
            rnd = {"order": list(order), "loadavg_1min": os.getloadavg()[0]}
            check = r == 0 and not a.no_check
            kept = {}  # round 0: tool -> {shape: dir}, for the checks
            for tool in order:
                out = os.path.join(self.out, f"{mode}-{tool}")
                shutil.rmtree(out, ignore_errors=True)
                cmds, outs, dirs = self.commands(tool, shapes, out)
                rnd[tool] = timed(cmds, outs)
                if check and tool in ("mergekit", "pytorch"):  # now, so /dev/shm holds fewer outputs
                    for s in shapes:
                        self.check_bits(mode, s, kept["wsm"][s], tool, dirs[s], checks)
                if check and tool in ("wsm", "pytorch"):
                    kept[tool] = dirs
                else:
                    shutil.rmtree(out, ignore_errors=True)
            for s in shapes if check else []:
                self.check_reference(mode, s, {t: kept[t][s] for t in kept}, checks)
            for tool in kept:
                shutil.rmtree(os.path.join(self.out, f"{mode}-{tool}"), ignore_errors=True)
            rnd["other_load"] = max(rnd[t]["other_load"] for t in TOOLS)
            busy = rnd["other_load"] > a.max_other_load
            print(f"{mode} round {r}: " + ", ".join(f"{t} {rnd[t]['seconds']:.2f} s" for t in TOOLS)
                  + f"; other load {rnd['other_load']:.2f} cores, loadavg {rnd['loadavg_1min']:.2f}"
                  + (" (busy: redone)" if busy and len(discarded) < a.max_redo else ""),
                  file=sys.stderr)
            r += 1
            if busy and len(discarded) < a.max_redo:
                discarded.append(rnd)
            else:
                rnd["busy"] = busy
                rounds.append(rnd)
        return {"shapes": shapes, "rounds": rounds, "discarded": discarded,
                "summary": summarise(rounds)}


def summarise(rounds):
    med = {t: statistics.median(r[t]["seconds"] for r in rounds) for t in TOOLS}
    return {t: {"median_s": med[t], "x_floor": med[t] / med["floor"],
                "x_wsm": med[t] / med["wsm"],
                "peak_rss_mb": max(r[t]["rss_mb"] for r in rounds)} for t in TOOLS}


def print_table(report):
    print(f"{report['count']} checkpoints x {report['params'] / 1e6:.1f}M params "
          f"({report['shards']} bf16 shards each, {report['input_bytes'] / 1e9:.2f} GB), "
          f"{report['data_dir']}, {report['rounds']} interleaved rounds (median)")
    print("| merge | tool | median | x floor | peer / wsm | peak RSS | other load (max) |")
    print("|-------|------|--------|---------|------------|----------|------------------|")
    for mode, m in report["modes"].items():
        label = ("linear" if mode == "one" else
                 f"{'+'.join(m['shapes'])}: wsm one pass, peers once per shape")
        for t in TOOLS:
            s = m["summary"][t]
            load = max(r[t]["other_load"] for r in m["rounds"])
            peer = "" if t in ("wsm", "floor") else f"{s['x_wsm']:.1f}x"
            print(f"| {label} | {t} | {s['median_s']:.2f} s | {s['x_floor']:.2f}x | {peer} | "
                  f"{s['peak_rss_mb']:.0f} MB | {load:.2f} |")
        busy = sum(r["busy"] for r in m["rounds"])
        if busy or m["discarded"]:
            print(f"  {mode}: {len(m['discarded'])} round(s) discarded for other load, {busy} kept "
                  f"busy (over {report['max_other_load']} cores)")
    for c in report["checks"]:
        print(f"check: {c['what']}: {'ok' if c['ok'] else 'FAILED'}"
              + (" (a figure, not a requirement)" if c.get("informational") else "")
              + (f" ({c['differ']} of {c['elements']} elements differ, by at most {c['max_abs_diff']:.2g})"
                 if "differ" in c and c["differ"] else "")
              + (f" (worst error {c['worst_error_over_bound']:.4f} of the bound, "
                 f"{c['not_correctly_rounded']} of {c['elements']} not correctly rounded)"
                 if "worst_error_over_bound" in c else ""))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))


def check_space(args):
    """Before writing anything: the inputs (unless kept from a run), and 6 outputs at once (wsm's
    and one peer's, three shapes) with 10% to spare."""
    c = SIZES[args.size]
    h, i, v, layers = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    model = 2 * (2 * v * h + layers * (4 * h * h + 3 * h * i + 2 * h) + h)  # bf16 bytes (MHA)
    kept = os.path.join(args.data_dir, "wsm-bench-peers", "in")
    need = model * ((0 if os.path.isdir(kept) else args.count) + 6) * 1.1
    free = shutil.disk_usage(args.data_dir).free
    if free < need:
        sys.exit(f"bench-peers: {args.data_dir} has {free / 1e9:.1f} GB free, needs {need / 1e9:.1f} GB")


def versions(py, wsm):
    r = subprocess.run([py, "-c", "import importlib.metadata as m, json; print(json.dumps({p: "
                        "m.version(p) for p in ('mergekit', 'torch', 'transformers', 'safetensors',"
                        " 'numpy')}))"], check=True, stdout=subprocess.PIPE, text=True)
    v = json.loads(r.stdout)
    w = subprocess.run([wsm, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    return {"wsm": w, **v, "python": platform.python_version()}


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                  if l.startswith("model name")), platform.machine())
    return f"{model}, {os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wsm", default=os.path.join(ROOT, "build", "wsm"))
    p.add_argument("--small", action="store_true", help="a model of a few MB (a functional run)")
    p.add_argument("--count", type=int, default=8, help="checkpoints (default 8)")
    p.add_argument("--shards", type=int, default=3, help="shards per checkpoint (default 3)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mode", choices=("one", "three", "both"), default="both")
    p.add_argument("--shapes", default="linear,1-sqrt,cosine", help="the three-shape mode's shapes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data-dir", default="/dev/shm", help="inputs and outputs (default /dev/shm)")
    p.add_argument("--keep-data", action="store_true", help="keep the inputs for the next run")
    p.add_argument("--max-other-load", type=float, default=0.2,
                   help="cores other processes may use during a round before it is redone")
    p.add_argument("--max-redo", type=int, default=None, help="default: 2 x rounds")
    p.add_argument("--no-check", action="store_true")
    p.add_argument("--json", default=os.path.join(ROOT, "build", "bench-peers.json"),
                   help="the report (default build/bench-peers.json)")
    p.add_argument("--venv-python", help="a python with the pinned packages (default: make the venv)")
    args = p.parse_args()
    args.size = "small" if args.small else "full"
    args.wsm = os.path.abspath(args.wsm)
    if args.max_redo is None:
        args.max_redo = 2 * args.rounds
    if not os.access(args.wsm, os.X_OK):
        sys.exit(f"bench-peers: no wsm binary at {args.wsm} (build it, or give --wsm PATH)")
    py = venv_python(args)
    bench = Bench(args, py)
    check_space(args)
    made = bench.generate()
    report = {"command": " ".join([os.path.relpath(__file__, os.getcwd())] + sys.argv[1:]),
              "machine": machine(), "versions": versions(py, args.wsm), "count": args.count,
              "params": made["params"], "shards": made["shards"], "input_bytes": made["bytes"],
              "data_dir": args.data_dir, "rounds": args.rounds, "max_other_load": args.max_other_load,
              "mergekit_flags": MERGEKIT_FLAGS, "modes": {}, "checks": []}
    try:
        modes = ["one", "three"] if args.mode == "both" else [args.mode]
        for mode in modes:
            shapes = ["linear"] if mode == "one" else args.shapes.split(",")
            report["modes"][mode] = bench.run_mode(mode, shapes, report["checks"])
    finally:
        shutil.rmtree(bench.out, ignore_errors=True)
        if not args.keep_data:
            shutil.rmtree(bench.data, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print_table(report)
    if not all(c["ok"] for c in report["checks"]):
        sys.exit("bench-peers: a correctness check failed (see above)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        w = argparse.ArgumentParser()
        w.add_argument("worker")
        w.add_argument("--dir"), w.add_argument("--size"), w.add_argument("--out")
        w.add_argument("--count", type=int), w.add_argument("--shards", type=int)
        w.add_argument("--seed", type=int), w.add_argument("--weights"), w.add_argument("--job")
        w.add_argument("inputs", nargs="*")
        wa = w.parse_intermixed_args()
        {"_generate": worker_generate, "_torch_merge": worker_torch_merge,
         "_check": worker_check}[wa.worker](wa)
    else:
        main()
