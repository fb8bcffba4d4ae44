"""How much of a merge survives when checkpoints are sent as bf16 parameters instead of fp32 master
weights (docs/python-client.md, "fp32 master weights or bf16 parameters"). numpy only, seeded.

Model of the stable phase: weights w0 ~ N(0, 0.02^2) (a typical init scale), then K checkpoints, each
one interval of updates later: w_j = w_{j-1} + d_j with d_j ~ N(0, s^2), s = update size per interval
relative to |w| (the parameter drift between two checkpoints). The merge is the uniform mean of the
K checkpoints, computed in float64 from (a) the fp32 checkpoints and (b) the same checkpoints rounded
to bf16 (round to nearest even), and (c) (a) rounded to bf16 once at the end (a bf16 model shipped
from an fp32 merge). What a merge adds over the newest checkpoint is m - w_K; the error of each
variant is reported relative to that displacement.

    python3 tools/bf16-merge-experiment.py
"""
import numpy as np


def bf16(x):
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32) << 16).view(np.float32)


def main():
    rng = np.random.default_rng(0)
    n, k, scale = 1_000_000, 8, 0.02
    print(f"{n} weights ~ N(0, {scale}^2), uniform mean of {k} checkpoints (f64 arithmetic);")
    print("error of the merge relative to what it adds over the newest checkpoint, |m - w_K|\n")
    print("| drift per interval / |w| | fp32 in, f32 out | bf16 in, f32 out | bf16 in, bf16 out | fp32 in, bf16 out "
          "| bf16 weights unchanged between checkpoints |")
    print("|---|---|---|---|---|---|")
    for rel in (1e-1, 1e-2, 3e-3, 1e-3, 1e-4):
        w = rng.normal(0, scale, n).astype(np.float32)
        ckpts = []
        for _ in range(k):
            w = (w + rng.normal(0, rel * scale, n)).astype(np.float32)
            ckpts.append(w)
        exact = np.mean([c.astype(np.float64) for c in ckpts], axis=0)
        signal = np.linalg.norm(exact - ckpts[-1])
        from_bf16 = np.mean([bf16(c).astype(np.float64) for c in ckpts], axis=0)
        variants = [exact.astype(np.float32), from_bf16.astype(np.float32), bf16(from_bf16), bf16(exact)]
        errors = " | ".join(f"{np.linalg.norm(v.astype(np.float64) - exact) / signal:.1%}" for v in variants)
        unchanged = np.mean(bf16(ckpts[-1]) == bf16(ckpts[-2]))
        print(f"| {rel:.0e} | {errors} | {unchanged:.0%} |")


if __name__ == "__main__":
    main()
