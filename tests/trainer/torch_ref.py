"""PyTorch side of tests/trainer/test_torch.cpp.

argv: DIR. Reads DIR/config.json, DIR/params.bin (f32 or f64, wsm layout), DIR/batches.bin (int32,
steps x 2 x B x T). Writes DIR/loss0.txt, DIR/grads.bin (same dtype as params) for batch 0, and
DIR/losses.txt: the losses of `steps` AdamW steps (clip, lr per step) starting from params.
Exits 77 when torch is not importable (the C++ test skips then).
"""
import json
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:
    print("torch_ref: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from torch_gpt import GPT, make_optimizer  # noqa: E402


def main():
    d = sys.argv[1]
    cfg = json.load(open(os.path.join(d, "config.json")))
    torch.set_num_threads(1)
    dtype = torch.float64 if cfg["dtype"] == "f64" else torch.float32
    npdt = np.float64 if cfg["dtype"] == "f64" else np.float32
    m = cfg["model"]
    model = GPT(m["vocab_size"], m["block_size"], m["n_layer"], m["n_head"], m["n_embd"]).to(dtype)
    model.load_flat(np.fromfile(os.path.join(d, "params.bin"), dtype=npdt))
    B, T, steps = cfg["B"], cfg["T"], cfg["steps"]
    batches = np.fromfile(os.path.join(d, "batches.bin"), dtype=np.int32).reshape(steps, 2, B, T)

    def batch(i):
        return torch.as_tensor(batches[i, 0]).long(), torch.as_tensor(batches[i, 1]).long()

    x, y = batch(0)
    loss = model(x, y)
    loss.backward()
    with open(os.path.join(d, "loss0.txt"), "w") as f:
        f.write("%.17g\n" % loss.item())
    model.flat_grads().detach().numpy().astype(npdt).tofile(os.path.join(d, "grads.bin"))

    opt = make_optimizer(model, lr=cfg["lrs"][0], weight_decay=cfg["weight_decay"])
    losses = []
    for i in range(steps):
        for g in opt.param_groups:
            g["lr"] = cfg["lrs"][i]
        opt.zero_grad()
        x, y = batch(i)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["clip"])
        opt.step()
        losses.append(loss.item())
    with open(os.path.join(d, "losses.txt"), "w") as f:
        f.write("\n".join("%.17g" % v for v in losses) + "\n")


if __name__ == "__main__":
    main()
