#!/usr/bin/env python3
"""Training throughput of a preset (default `small`): wsm's CPU trainer vs PyTorch training the same
model (tools/torch_gpt.py: same layers, tanh GELU, causal attention, AdamW, clipping, batch shape),
with the same thread count, on this machine, in one run.

Contenders run one after the other in each round, the order rotating from round to round, so a
change in the machine's load hits all of them alike; the summary gives the median of each and the
median of the per-round ratios. The load average is printed with every round: on a shared machine
the absolute figures move with it, the ratios much less.

PyTorch "latest" is the one from PyPI, installed on first use into a venv (data/cache/torch-venv,
`pip install torch numpy`: the default wheel, what a user gets today); Debian's python3-torch is
measured too when /usr/bin/python3 can import it. Each prints its version and BLAS.

Usage: tools/bench-train.py [--wsm build/wsm] [--wsm-base OLD_BINARY] [--threads 2] [--steps 20]
                            [--rounds 3] [--preset small] [--no-debian-torch] [--no-install] [--torch-passive]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "data", "cache", "torch-venv")
WARMUP = 2  # steps run before the clock starts, on both sides (first touch of memory, JIT of GEMMs)

PRESETS = {  # mirrors trainer/model.cpp
    "tiny": dict(block_size=32, n_layer=2, n_head=2, n_embd=32, batch=8),
    "small": dict(block_size=128, n_layer=4, n_head=4, n_embd=128, batch=16),
}


def thread_env(threads):
    n = str(threads)
    return dict(os.environ, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)


GEMM_LIB = {}  # wsm binary -> the GEMM library its log names


def bench_wsm(wsm, preset, steps, threads, batch):
    """tok/s over `steps` steps after WARMUP, from wsm's per-interval log lines."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [wsm, "train", "--preset", preset, "--steps", str(WARMUP + steps), "--every", str(WARMUP), "--out", out,
               "--threads", str(threads), "--no-checkpoints", "--eval-positions", "0", "--batch-size", str(batch)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(threads))
        if r.returncode != 0:
            sys.exit("wsm train failed:\n" + r.stderr)
        lib = re.search(r"float GEMMs by (\S+)", r.stdout + r.stderr)
        GEMM_LIB[wsm] = lib.group(1) if lib else "OpenBLAS (older wsm)"
        rates = [float(x) for x in re.findall(r"tok/s (\d+)", r.stdout)][1:]  # drop the warm-up interval
        if not rates:
            sys.exit("bench-train: no tok/s lines in wsm's output:\n" + r.stdout)
        # every interval has the same number of tokens, so the overall rate is the harmonic mean
        return len(rates) / sum(1.0 / x for x in rates)


def torch_worker(preset, steps, threads, vocab):
    """Runs inside the python under test; prints one JSON line."""
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from torch_gpt import GPT, make_optimizer
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = PRESETS[preset]
    T, B = cfg["block_size"], cfg["batch"]
    model = GPT(vocab, T, cfg["n_layer"], cfg["n_head"], cfg["n_embd"])
    opt = make_optimizer(model, lr=1e-3)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (WARMUP + steps, B, T + 1), generator=g)

    def one(i):
        x, y = data[i, :, :-1], data[i, :, 1:]
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for i in range(WARMUP):
        one(i)
    t0 = time.perf_counter()
    for i in range(WARMUP, WARMUP + steps):
        one(i)
    tok_s = steps * B * T / (time.perf_counter() - t0)
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    cap = re.search(r"CPU capability usage: (\w+)", config)
    print(json.dumps(dict(tok_s=tok_s, version=torch.__version__, blas=blas.group(1) if blas else "?",
                          cpu=cap.group(1) if cap else "?", threads=torch.get_num_threads())))


def bench_torch(python, preset, steps, threads, vocab, passive=False):
    cmd = [python, os.path.abspath(__file__), "--torch-worker", "--preset", preset, "--steps", str(steps),
           "--threads", str(threads), "--vocab", str(vocab)]
    env = thread_env(threads)
    if passive:  # OpenMP threads sleep instead of spinning while they wait (helps on a busy machine)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("torch run with %s failed:\n%s" % (python, r.stderr))
    return json.loads(r.stdout.strip().splitlines()[-1])


def latest_torch_python(install):
    """The venv's python, creating the venv and installing PyTorch from PyPI if needed."""
    py = os.path.join(VENV, "bin", "python")
    if os.path.exists(py) and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
        return py
    if not install:
        sys.exit("bench-train: no PyTorch in %s (run without --no-install to create it)" % VENV)
    print("bench-train: installing PyTorch from PyPI into %s (several GB with its CUDA libraries)" % VENV,
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "--quiet", "torch", "numpy"], check=True)
    return py


def debian_torch_python():
    py = "/usr/bin/python3"
    ok = os.path.exists(py) and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0
    return py if ok else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsm", default=os.path.join(ROOT, "build", "wsm"))
    ap.add_argument("--wsm-base", help="a second wsm binary (e.g. built from an older commit), measured alongside")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per run (after %d warm-up steps)" % WARMUP)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=82, help="vocabulary for the torch side (Austen has 82 bytes)")
    ap.add_argument("--no-debian-torch", action="store_true", help="skip Debian's python3-torch")
    ap.add_argument("--no-install", action="store_true", help="fail instead of creating the PyTorch venv")
    ap.add_argument("--torch-passive", action="store_true",
                    help="also run PyTorch latest with OMP_WAIT_POLICY=PASSIVE (its best case on a busy machine)")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args.preset, args.steps, args.threads, args.vocab)

    batch = PRESETS[args.preset]["batch"]
    runners = {"wsm": lambda: bench_wsm(args.wsm, args.preset, args.steps, args.threads, batch)}
    if args.wsm_base:
        runners["wsm-base"] = lambda: bench_wsm(args.wsm_base, args.preset, args.steps, args.threads, batch)
    info = {}
    latest = latest_torch_python(not args.no_install)
    for name, py, passive in [("torch-latest", latest, False),
                              ("torch-passive", latest if args.torch_passive else None, True),
                              ("torch-debian", None if args.no_debian_torch else debian_torch_python(), False)]:
        if py:
            def run(py=py, name=name, passive=passive):
                res = bench_torch(py, args.preset, args.steps, args.threads, args.vocab, passive)
                info[name] = "PyTorch %s (BLAS %s, CPU capability %s, %d threads%s)" % (
                    res["version"], res["blas"], res["cpu"], res["threads"], ", OMP_WAIT_POLICY=PASSIVE" if passive else "")
                return res["tok_s"]
            runners[name] = run

    names = list(runners)
    results = {n: [] for n in names}
    print("preset %s, batch %dx%d, %d threads, %d timed steps per run, %d rounds; %s"
          % (args.preset, batch, PRESETS[args.preset]["block_size"], args.threads, args.steps, args.rounds,
             os.uname().nodename), flush=True)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        load = os.getloadavg()[0]
        row = {}
        for n in order:
            row[n] = runners[n]()
            results[n].append(row[n])
        ratio = " ".join("wsm/%s %.2fx" % (n, row["wsm"] / row[n]) for n in names if n != "wsm")
        print("round %d (load %.1f): %s | %s" % (r + 1, load, ", ".join("%s %.0f" % (n, row[n]) for n in names), ratio),
              flush=True)

    print("\nmedian tok/s over %d rounds (load average now %.1f):" % (args.rounds, os.getloadavg()[0]))
    for n in names:
        binary = args.wsm_base if n == "wsm-base" else args.wsm
        print("  %-13s %8.0f   %s" % (n, statistics.median(results[n]),
                                      info.get(n, "%s (GEMMs: %s)" % (binary, GEMM_LIB.get(binary)))))
    for n in names:
        if n == "wsm":
            continue
        per_round = [w / o for w, o in zip(results["wsm"], results[n])]
        print("  wsm / %-13s median of per-round ratios %.2fx (range %.2f-%.2f)"
              % (n, statistics.median(per_round), min(per_round), max(per_round)))
    if "torch-latest" in results:
        ratio = statistics.median(w / o for w, o in zip(results["wsm"], results["torch-latest"]))
        print("target: wsm >= 1.2x PyTorch latest: %s (%.2fx)" % ("met" if ratio >= 1.2 else "NOT met", ratio))


if __name__ == "__main__":
    main()
