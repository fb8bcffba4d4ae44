"""The wsm trainer's GPT in PyTorch: same layers, same parameter names and layout, same AdamW.

Used as the independent reference by tests/trainer/torch_ref.py and as the baseline of
tools/bench-train.py. Parameter order matches trainer/model.cpp's param_layout():
wte, wpe, then per layer ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj (weight, bias),
then ln_f. Linear weights are [out, in]; the output head is tied to wte.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(C, 3 * C)
        self.attn.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(C, 4 * C)
        self.mlp.c_proj = nn.Linear(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.NH
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, self.NH, hs).transpose(1, 2)
        k = k.view(B, T, self.NH, hs).transpose(1, 2)
        v = v.view(B, T, self.NH, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.attn.c_proj(y)
        x = x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, eps=1e-5)

    def forward(self, idx, targets):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(B * T, -1), targets.reshape(-1))

    def ordered(self):
        """(wsm name, parameter) in the wsm flat-buffer order."""
        out = [("wte", self.wte.weight), ("wpe", self.wpe.weight)]
        for l, b in enumerate(self.h):
            p = "h.%d." % l
            for name, mod in [("ln_1", b.ln_1), ("attn.c_attn", b.attn.c_attn), ("attn.c_proj", b.attn.c_proj),
                              ("ln_2", b.ln_2), ("mlp.c_fc", b.mlp.c_fc), ("mlp.c_proj", b.mlp.c_proj)]:
                out.append((p + name + ".weight", mod.weight))
                out.append((p + name + ".bias", mod.bias))
        out += [("ln_f.weight", self.ln_f.weight), ("ln_f.bias", self.ln_f.bias)]
        return out

    def load_flat(self, flat):
        off = 0
        with torch.no_grad():
            for _, p in self.ordered():
                n = p.numel()
                p.copy_(torch.as_tensor(flat[off:off + n]).view_as(p))
                off += n
        assert off == len(flat), "flat parameter buffer size mismatch"

    def flat_grads(self):
        return torch.cat([p.grad.reshape(-1) for _, p in self.ordered()])


def make_optimizer(model, lr, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8):
    """AdamW with decay on matrices (rank 2) only, as the wsm trainer does."""
    decay = [p for _, p in model.ordered() if p.dim() == 2]
    no_decay = [p for _, p in model.ordered() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)
