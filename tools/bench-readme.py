#!/usr/bin/env python3
"""Re-measures every figure of the README's "Measured so far" table and prints the table.

Each round runs every benchmark once, the order rotating from round to round, so that a change in
the machine's load hits all of them alike; each figure is the median over the rounds, with the range
beside it. Each round also measures the other load: the cores that processes other than the
benchmarks kept busy meanwhile (/proc/stat, less the benchmarks' own CPU time). A figure measured
with more than --max-other-load cores of other load is not a quiet-machine figure, and the table
says so.

  tools/bench-readme.py [--wsm build/wsm] [--rounds 3] [--train] [--peers] [--json build/bench-readme.json]

--train adds tools/bench-train.py (wsm's trainer vs PyTorch from PyPI, its own interleaved rounds;
a venv on first use); --peers adds tools/bench-peers.py (wsm merge vs mergekit and a PyTorch script
on Hugging Face checkpoints; ~8 minutes, ~11 GB in /dev/shm). Both are off by default: the core rows
take about a minute per round.
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

from bench_load import busy_seconds  # tools/, the script's own folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    """stdout+stderr of cmd; exits naming the command when it fails."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.exit(f"bench-readme: {' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}")
    return p.stdout


def children_seconds():
    """CPU seconds of the benchmarks run (and reaped) so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def number(pattern, text, what):
    m = re.search(pattern, text, re.M)
    if not m:
        sys.exit(f"bench-readme: cannot read {what} from:\n{text[-3000:]}")
    return float(m.group(1))


def bench_merge(wsm):
    """`wsm bench merge` runs its own interleaved rounds; each ratio is its median of per-round ratios."""
    out = run([wsm, "bench", "merge", "--size-mb", "64", "--inputs", "8", "--dtype", "bf16", "--dir", "/dev/shm",
               "--repeats", "5"])
    ratio = r"\s([\d.]+)x \[[\d.]+-[\d.]+\]\s+\("
    return {
        "merge_m1_vs_read_write": number(r"^merge M=1 .*" + ratio + r"vs read\+write", out, "M=1 vs read+write"),
        "merge_m1_vs_memcpy": number(ratio + r"vs memcpy; target", out, "M=1 vs memcpy"),
        "merge_m3_vs_m1": number(r"^merge M=3 .*" + ratio + r"vs M=1", out, "M=3 vs M=1"),
        "merge_m3_vs_floor": number(ratio + r"vs read K \+ write 3", out, "M=3 vs its floor"),
    }


def bench_kernel(wsm):
    out = run([wsm, "bench", "merge", "--kernel-only", "--size-mb", "512", "--inputs", "8", "--dtype", "f32",
               "--backend", "cpu", "--repeats", "3"])
    return {"kernel_m1_vs_memcpy": number(r"^merge M=1 \(cpu\).*\s([\d.]+)x memcpy time", out, "kernel vs memcpy")}


def bench_ingest(wsm):
    out = run([wsm, "bench", "ingest", "--size-mb", "64", "--chunk-mb", "4", "--checkpoints", "8", "--repeats", "3"])
    return {
        "ingest_vs_raw_zmq": number(r"^ingest, buffers handed over.*?GB/s\s+([\d.]+)x", out, "ingest vs raw ZeroMQ"),
        "ingest_gbps": number(r"^ingest, buffers handed over[^:]*:\s+([\d.]+) GB/s", out, "ingest GB/s"),
        "send_blocks_vs_memcpy": number(r"blocking ([\d.]+)x memcpy", out, "send_checkpoint vs memcpy"),
    }


def bench_startup(wsm):
    """Wall time and peak RSS of `wsm --version`: the best of 5 starts."""
    best = None
    for _ in range(5):
        t0 = time.perf_counter()
        p = subprocess.Popen([wsm, "--version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(p.pid, 0)  # the child's own peak RSS, not this process's
        seconds = time.perf_counter() - t0
        p.returncode = status  # reaped here: Popen must not wait for it again
        if status != 0:
            sys.exit("bench-readme: wsm --version failed")
        if best is None or seconds < best[0]:
            best = (seconds, usage.ru_maxrss / 1024)
    return {"startup_s": best[0], "startup_rss_mb": best[1]}


BENCHES = [bench_merge, bench_kernel, bench_ingest, bench_startup]


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def fmt(s, digits=2, unit="x"):
    lo, hi = f"{s['min']:.{digits}f}", f"{s['max']:.{digits}f}"
    return f"{s['median']:.{digits}f}{unit} ({lo}-{hi})"


def table(fig, other, quiet):
    rows = [
        ("file merge vs reading the inputs and writing one output (8 x 64 MB bf16, /dev/shm)",
         fmt(fig["merge_m1_vs_read_write"]), "<= 1.3x", "`wsm bench merge`"),
        ("file merge vs memcpy of the same bytes (same run)", fmt(fig["merge_m1_vs_memcpy"]), "<= 1.5x",
         "`wsm bench merge`"),
        ("file merge, 3 shapes vs 1 shape (same run)", fmt(fig["merge_m3_vs_m1"]) + "; vs its own read K + write 3 floor: "
         + fmt(fig["merge_m3_vs_floor"]), "<= 1.1x of its floor", "`wsm bench merge`"),
        ("merge kernel alone, f32, vs memcpy of the same bytes (8 x 512 MB)", fmt(fig["kernel_m1_vs_memcpy"]) + " the time",
         "memory-bound", "`wsm bench merge --kernel-only`"),
        ("checkpoint ingest through `wsm serve` vs raw ZeroMQ one-buffer (64 MiB checkpoints, 4 MiB chunks)",
         fmt(fig["ingest_vs_raw_zmq"]) + f" ({fig['ingest_gbps']['median']:.2f} GB/s)", ">= 0.8x", "`wsm bench ingest`"),
        ("time `send_checkpoint` blocks vs memcpy of the same tensors", fmt(fig["send_blocks_vs_memcpy"]), "<= ~1x",
         "`wsm bench ingest`"),
        ("start-up of any `wsm` command (best of 5)", f"{fig['startup_s']['median']:.3f} s, "
         f"{fig['startup_rss_mb']['median']:.0f} MB RSS", "", "`wsm --version`"),
    ]
    load = ", ".join(f"{x:.2f}" for x in other)
    print(f"\nother load per round (cores): {load} ({'quiet' if quiet else 'NOT quiet: figures are indicative'})\n")
    print("| what | figure: median (range) | target | command |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wsm", default=os.path.join(ROOT, "build", "wsm"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-other-load", type=float, default=0.2,
                    help="cores of other load above which the table says the machine was busy")
    ap.add_argument("--train", action="store_true", help="also run tools/bench-train.py")
    ap.add_argument("--peers", action="store_true", help="also run tools/bench-peers.py")
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench-readme.json"))
    a = ap.parse_args()
    if not os.access(a.wsm, os.X_OK):
        sys.exit(f"bench-readme: {a.wsm} is not built (cmake --build build)")
    per_round, other, loads = [], [], []
    for r in range(a.rounds):
        loads.append(os.getloadavg()[0])
        busy0, own0, t0 = busy_seconds(), children_seconds(), time.perf_counter()
        order = BENCHES[r % len(BENCHES):] + BENCHES[:r % len(BENCHES)]
        figures = {}
        for bench in order:
            print(f"round {r + 1}/{a.rounds}: {bench.__name__}", flush=True)
            figures.update(bench(a.wsm))
        per_round.append(figures)
        wall = time.perf_counter() - t0
        other.append(max(0.0, (busy_seconds() - busy0) - (children_seconds() - own0)) / wall)
    fig = {k: summary([f[k] for f in per_round]) for k in per_round[0]}
    quiet = max(other) <= a.max_other_load
    table(fig, other, quiet)
    result = {"command": " ".join(sys.argv), "wsm": a.wsm, "other_load": other, "load_average": loads,
              "quiet": quiet, "figures": fig}
    for flag, script in (("train", "bench-train.py"), ("peers", "bench-peers.py")):
        if getattr(a, flag):
            print(f"\n== tools/{script} ==", flush=True)
            result[flag] = run([sys.executable, os.path.join(ROOT, "tools", script), "--wsm", a.wsm])
            print(result[flag][-3000:])
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(a.json + ".tmp", a.json)
    print(f"\nwritten: {a.json}")


if __name__ == "__main__":
    main()
