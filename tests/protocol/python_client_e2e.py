"""Driven by test_client_python.cpp: streams checkpoints to a running merger with wsm_client, the
tensors given as a torch state_dict when torch is importable (numpy arrays otherwise), built from
the same formula as serve_test_util.h, then checks status() and merge_now() on the way."""
import argparse
import sys
import time

import numpy as np

import wsm_client

SHAPES = [(64, 33), (100,)]


def model(step, use_torch):
    tensors = {}
    for t, shape in enumerate(SHAPES):
        i = np.arange(int(np.prod(shape)), dtype=np.float64)
        v = (np.sin(0.001 * i * (t + 1) + 0.01 * step) + 0.001 * step).astype(np.float32).reshape(shape)
        tensors[f"layer{t}.weight"] = v
    tensors["step_counter"] = np.array([step], dtype=np.int64)
    if use_torch:
        import torch

        tensors = {k: torch.from_numpy(v) for k, v in tensors.items()}
    return tensors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--run", default="py")
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--last", type=int, default=1000)
    ap.add_argument("--every", type=int, default=100)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401

        use_torch = True
    except ImportError:
        use_torch = False
    print(f"python client: torch state_dict: {use_torch}", flush=True)

    merger = wsm_client.MergerClient(args.endpoint, run_id=args.run, chunk_bytes=3000)
    for step in range(args.first, args.last + 1, args.every):
        merger.send_checkpoint(step, step * 1000, 1e-3, model(step, use_torch))
        merger.flush()  # paced: one output per due step (the daemon coalesces when merges lag)
        while wsm_client.status(args.endpoint)["pending"]:
            time.sleep(0.02)
    assert merger.stats["acked"] == (args.last - args.first) // args.every + 1, merger.stats

    # A duplicate step is reported at flush.
    merger.send_checkpoint(args.last, 0, 1e-3, model(args.last, use_torch))
    try:
        merger.flush()
        print("duplicate step not reported", file=sys.stderr)
        return 1
    except wsm_client.MergerError as e:
        assert "already received" in str(e), e
    merger.close()

    st = wsm_client.status(args.endpoint)
    steps = [w["step"] for w in st["window"] if w["run_id"] == args.run]
    assert int(steps[-1]) == args.last, st
    reply = wsm_client.merge_now(args.endpoint, args.run, "linear", 200)
    assert reply["source_steps"] == [args.last - 100, args.last], reply
    assert np.allclose(reply["weights"], [0.5, 0.5]), reply
    print("python client: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
