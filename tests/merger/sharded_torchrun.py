#!/usr/bin/env python3
"""Issue 17 with torchrun: a sharded job of 4 CPU processes (gloo) on two "nodes" of 2 ranks, each
node's ranks sending their slices to that node's `wsm serve` on 127.0.0.1, both daemons writing
their parts into one --out. Then the merged outputs are checked without wsm's reader: the parts are
read with h5py following docs/checkpoint-format.md ("Multi-part checkpoints"), put together with
numpy and compared with a float64 merge of the whole tensors; and `wsm convert` of each output to a
Hugging Face sharded directory is read back with a numpy safetensors reader (and the `safetensors`
package when importable) and compared byte for byte with the parts.

    sharded_torchrun.py --wsm build/wsm --out DIR          (the driver: daemons, torchrun, checks)
    sharded_torchrun.py --worker ENDPOINT0,ENDPOINT1 ...    (one rank, started by torchrun)
"""
import argparse
import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np

STEPS = list(range(0, 700, 100))
EMULATE = "linear:300,1-sqrt:300"
EVERY = 200
# Global tensors: "rows" split by rows (torch.chunk: 3,3,3,1), "cols" split by columns (3,3,3,0:
# rank 3 holds none), "bias" replicated on every rank, "emb" a DTensor Shard(0) when torch has
# DTensor (explicit slices of 2 uneven blocks per rank otherwise), "step" an int64 on rank 0.
SHAPES = {"rows": (10, 6), "cols": (4, 9), "bias": (6,), "emb": (11, 4)}


def whole(name, step):
    """The global tensor at a step, in float64 (the reference) - the workers send it as float32."""
    shape = SHAPES[name]
    i = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    seed = sum(map(ord, name))
    return np.sin(0.37 * i + seed) + 0.01 * step * np.cos(0.11 * i + seed)


def chunk_bounds(n, parts, k):
    """torch.chunk's k-th piece of n: ceil-sized, the last ones short or empty."""
    c = -(-n // parts)
    start = min(k * c, n)
    return start, min(c, n - start)


# ---------------------------------------------------------------- worker (one rank under torchrun)
def worker(args):
    import torch
    import torch.distributed as dist

    sys.path.insert(0, args.client_path)
    from wsm_client import REPLICATED, MergerClient

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    node = int(os.environ["GROUP_RANK"])
    endpoint = args.worker.split(",")[node]
    have_dtensor = True
    try:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor
        mesh = init_device_mesh("cpu", (world,))
    except ImportError:
        have_dtensor = False
    merger = MergerClient(endpoint, run_id="tr", rank=rank, world_size=world, chunk_bytes=40,
                          stall_timeout_ms=20000)  # local_world_size: torchrun's LOCAL_WORLD_SIZE
    assert merger.local_world_size == 2, merger.local_world_size
    for step in STEPS:
        # Rank 0 owns the truth; the others get it over gloo (a real collective per checkpoint).
        full = {n: torch.from_numpy(whole(n, step).astype(np.float32)) if rank == 0 else torch.zeros(SHAPES[n])
                for n in SHAPES}
        for t in full.values():
            dist.broadcast(t, 0)
        tensors, slices = {}, {}
        r0, rn = chunk_bounds(10, world, rank)
        tensors["rows"] = full["rows"][r0:r0 + rn].clone()
        slices["rows"] = (SHAPES["rows"], (r0, 0))
        c0, cn = chunk_bounds(9, world, rank)
        if cn:
            tensors["cols"] = full["cols"][:, c0:c0 + cn].clone()
            slices["cols"] = (SHAPES["cols"], (0, c0))
        tensors["bias"] = full["bias"].clone()
        slices["bias"] = REPLICATED
        if have_dtensor:
            tensors["emb"] = distribute_tensor(full["emb"], mesh, [Shard(0)])
        else:  # two blocks per rank: rows k and k+4 of the 11 (and 8..10 on rank 3)
            rows_of = {r: [(r, 1), (r + 4, 1)] for r in range(4)}
            rows_of[3].append((8, 3))
            for i, (r, n) in enumerate(rows_of[rank]):
                tensors[f"emb#{i}"] = full["emb"][r:r + n].clone()
        if rank == 0:
            tensors["step"] = torch.tensor([step], dtype=torch.int64)
        if have_dtensor:
            merger.send_checkpoint(step, step * 1000, 1e-3, tensors, slices=slices)
        else:  # several blocks of one tensor: (name, array, (global shape, offsets)) triples
            triples = [(n, v, slices.get(n)) if n in slices else (n, v) for n, v in tensors.items() if "#" not in n]
            for i, (r, n) in enumerate(rows_of[rank]):
                triples.append(("emb", tensors[f"emb#{i}"], (SHAPES["emb"], (r, 0))))
            merger.send_checkpoint(step, step * 1000, 1e-3, triples)
    merger.close()  # waits for every acknowledgement
    dist.barrier()
    print(f"rank {rank}: {len(STEPS)} checkpoints acknowledged (DTensor: {have_dtensor})", flush=True)
    dist.destroy_process_group()


# ------------------------------------------------------------------------------- driver and checks
def free_port():
    """A loopback port nothing listens on (bound, then released). It lies below the kernel's
    ephemeral range: a port from that range could be handed to another test's socket before the
    daemon binds it (as serve_test_util.h's free_loopback_endpoint explains)."""
    import random
    import socket

    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_low = int(f.read().split()[0])
    for _ in range(200):
        port = random.randint(10000, max(11000, ephemeral_low) - 1)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def read_parts(step_dir):
    """Whole tensors from the parts, as docs/checkpoint-format.md says: h5py and the wsm.part layout."""
    import h5py

    out, filled, ranks, world = {}, {}, set(), None
    for path in sorted(glob.glob(os.path.join(step_dir, "part-rank*.h5"))):
        with h5py.File(path, "r") as f:
            layout = json.loads(f.attrs["wsm.part"])
            world = layout["world_size"]
            ranks.update(layout["ranks"])
            for e in layout["entries"]:
                data = f["tensors"][e["entry"].replace("%", "%25").replace("/", "%2F")][()]
                g = tuple(e["global_shape"])
                if e["name"] not in out:
                    out[e["name"]] = np.zeros(g, dtype=data.dtype)
                    filled[e["name"]] = np.zeros(g, dtype=np.int32)
                idx = tuple(slice(o, o + n) for o, n in zip(e["offsets"], e["lengths"]))
                if e["replicated"] and filled[e["name"]].any():
                    assert np.array_equal(out[e["name"]], data), (path, e["name"])
                    continue
                out[e["name"]][idx] = data
                filled[e["name"]][idx] += 1
    assert ranks == set(range(world)), (step_dir, ranks)
    for name, f in filled.items():
        assert (f == 1).all(), f"{step_dir}: {name} not tiled exactly"
    return out


def read_safetensors_dir(d):
    index = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        raw = open(os.path.join(d, shard), "rb").read()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        header.pop("__metadata__", None)
        np_dtype = {"F32": np.float32, "I64": np.int64}
        for name, e in header.items():
            b, en = e["data_offsets"]
            tensors[name] = np.frombuffer(raw[8 + n + b:8 + n + en], dtype=np_dtype[e["dtype"]]).reshape(e["shape"])
            assert index["weight_map"][name] == shard
    try:
        from safetensors.numpy import load_file

        for shard in sorted(set(index["weight_map"].values())):
            for name, t in load_file(os.path.join(d, shard)).items():
                assert np.array_equal(t, tensors[name]), name
    except ImportError:
        pass
    return tensors


def check(out_dir, wsm):
    records = {}
    for node in (0, 1):
        for r in json.load(open(os.path.join(out_dir, f"index-node{node}.json")))["outputs"]:
            records.setdefault(r["path"], []).append(r)
    assert len(records) >= 4, records.keys()
    for path, recs in records.items():
        assert len(recs) == 2, f"{path}: listed by {len(recs)} daemons"
        rec = recs[0]
        assert recs[1]["weights"] == rec["weights"] and recs[1]["sources"] == rec["sources"]
        weights, sources = np.array(rec["weights"]), rec["sources"]
        assert abs(weights.sum() - 1) < 1e-12 and sources == [s for s in STEPS if s in sources]
        if rec["spec"] == "linear":
            assert np.allclose(weights, 1 / len(weights), rtol=0, atol=1e-15), weights
        merged = read_parts(path)
        for name in SHAPES:
            ref = sum(w * whole(name, s).astype(np.float32).astype(np.float64) for w, s in zip(weights, sources))
            err = np.abs(merged[name].astype(np.float64) - ref).max()
            assert err < 2e-6, f"{path}: {name} off by {err}"
        assert merged["step"][0] == rec["step"], (path, merged["step"])
        hf = os.path.join(os.path.dirname(out_dir), "hf", os.path.relpath(path, out_dir))
        subprocess.run([wsm, "convert", path, hf, "--shard-size", "200B"], check=True, capture_output=True)
        converted = read_safetensors_dir(hf)
        assert sorted(converted) == sorted(merged), (sorted(converted), sorted(merged))
        for name, t in merged.items():
            assert converted[name].tobytes() == t.tobytes(), f"{hf}: {name} differs from the parts"
    print(f"{len(records)} merged outputs checked against the float64 reference and their HF conversions")


# torchrun's default "--redirects 0 --tee 0" breaks on Debian's torch 1.13 under Python 3.11 (its
# Std flag lookup misses the zero member); stdout redirected and teed (1) works on every version.
TORCHRUN_STD = ("--redirects", "1", "--tee", "1")


def driver(args):
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    out = os.path.join(args.out, "merged")
    endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(2)]
    daemons = [subprocess.Popen([args.wsm, "serve", "--listen", ep, "--out", out, "--emulate", EMULATE,
                                 "--every", str(EVERY), "--index", f"index-node{n}.json", "--partial-timeout", "60"],
                                stdout=open(os.path.join(args.out, f"serve{n}.log"), "w"), stderr=subprocess.STDOUT)
               for n, ep in enumerate(endpoints)]
    try:
        time.sleep(0.5)
        port = free_port()
        env = dict(os.environ, PYTHONPATH=args.client_path + os.pathsep + os.environ.get("PYTHONPATH", ""))
        nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
                                   str(n), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                                   str(port), *TORCHRUN_STD, os.path.abspath(__file__), "--worker", ",".join(endpoints),
                                   "--client-path", args.client_path], env=env)
                 for n in range(2)]
        deadline = time.monotonic() + 300
        for p in nodes:
            rc = p.wait(timeout=max(1, deadline - time.monotonic()))
            assert rc == 0, f"torchrun node exited {rc}"
    finally:
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        for d in daemons:
            d.wait(timeout=60)
    check(out, args.wsm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", help="daemon endpoints, one per node (worker mode)")
    ap.add_argument("--wsm")
    ap.add_argument("--out")
    ap.add_argument("--client-path", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                           "protocol", "python"))
    args = ap.parse_args()
    args.client_path = os.path.abspath(args.client_path)
    worker(args) if args.worker else driver(args)


if __name__ == "__main__":
    main()
