#!/usr/bin/env python3
"""Training throughput of the `small` preset: wsm's CPU trainer vs PyTorch training the same model
(tools/torch_gpt.py: same layers, same AdamW, same batch shape), on this machine, in one run, with
the same thread count for both. Prints tokens/s of each and the ratio.

Usage: tools/bench-train.py [--wsm build/wsm] [--threads 2] [--steps 30] [--rounds 2]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_wsm(wsm, preset, steps, threads, batch):
    with tempfile.TemporaryDirectory() as out:
        cmd = [wsm, "train", "--preset", preset, "--steps", str(steps), "--every", str(steps), "--out", out,
               "--threads", str(threads), "--no-checkpoints", "--eval-positions", "0"]
        if batch:
            cmd += ["--batch-size", str(batch)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit("wsm train failed:\n" + r.stderr)
        m = re.findall(r"tok/s (\d+)", r.stdout)
        return float(m[-1])


def bench_torch(preset_cfg, steps, threads, batch, vocab):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from torch_gpt import GPT, make_optimizer
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    T = preset_cfg["block_size"]
    model = GPT(vocab, T, preset_cfg["n_layer"], preset_cfg["n_head"], preset_cfg["n_embd"])
    opt = make_optimizer(model, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (steps + 1, batch, T + 1), generator=g)

    def one(i):
        x, y = data[i, :, :-1], data[i, :, 1:]
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    one(steps)  # warm-up, not timed
    t0 = time.perf_counter()
    for i in range(steps):
        one(i)
    return steps * batch * T / (time.perf_counter() - t0)


PRESETS = {  # mirrors trainer/model.cpp
    "tiny": dict(block_size=32, n_layer=2, n_head=2, n_embd=32, batch=8),
    "small": dict(block_size=128, n_layer=4, n_head=4, n_embd=128, batch=16),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsm", default=os.path.join(ROOT, "build", "wsm"))
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each side counts")
    ap.add_argument("--vocab", type=int, default=82, help="vocabulary for the torch side (Austen has 82 bytes)")
    args = ap.parse_args()
    cfg = PRESETS[args.preset]
    wsm_best = torch_best = 0.0
    for r in range(args.rounds):
        w = bench_wsm(args.wsm, args.preset, args.steps, args.threads, cfg["batch"])
        t = bench_torch(cfg, args.steps, args.threads, cfg["batch"], args.vocab)
        print("round %d: wsm %.0f tok/s, torch %.0f tok/s, ratio %.2fx" % (r + 1, w, t, w / t), flush=True)
        wsm_best, torch_best = max(wsm_best, w), max(torch_best, t)
    import torch
    print("preset %s, %d threads, batch %dx%d: wsm %.0f tok/s, PyTorch %s %.0f tok/s, ratio %.2fx (target >= 1.5x)"
          % (args.preset, args.threads, cfg["batch"], cfg["block_size"], wsm_best, torch.__version__, torch_best,
             wsm_best / torch_best))


if __name__ == "__main__":
    main()
