#!/usr/bin/env python3
"""Held-out loss of a Hugging Face causal LM directory, for `wsm compare sweep --eval-cmd` and
`wsm serve --eval-cmd` (docs/compare.md):

    wsm compare sweep --eval-cmd 'python tools/examples/hf_eval.py {path} --text heldout.txt' \\
                      --score-key loss --noise-key stderr ...

Loads PATH with AutoModelForCausalLM.from_pretrained (and its tokenizer when PATH has one, else
--tokenizer DIR), tokenizes --text, keeps the first --max-tokens tokens, cuts them into blocks of
--block-size (default: the model's context) and computes the mean next-token cross-entropy (nats)
over every predicted token. The last line on stdout is JSON, the loss its last number:

    {"tokens": 4032, "blocks": 63, "stderr": 0.0123, "loss": 3.4567}

`stderr` is the standard error of the mean over blocks (sd of the blocks' mean losses / sqrt(n)); two
models scored on the same text differ by less noise than that (their block losses are correlated),
so reading "equal within 2 combined standard errors" is a conservative verdict. The model runs in the
dtype its config.json names, on the GPU when there is one (--device). Needs torch and transformers
(`pip install './protocol/python[hf]'`). Exit status 1 with a one-line reason on any failure.
"""
import argparse
import json
import math
import os
import sys


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Held-out loss of a Hugging Face causal LM directory")
    ap.add_argument("path", help="a directory from_pretrained loads (config.json + weights)")
    ap.add_argument("--text", required=True, help="UTF-8 text file to score (held out from training)")
    ap.add_argument("--max-tokens", type=int, default=16384, help="score at most this many tokens (default 16384)")
    ap.add_argument("--block-size", type=int, default=0, help="tokens per forward pass (default: the model's context)")
    ap.add_argument("--tokenizer", help="tokenizer directory when PATH has none")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    args = ap.parse_args(argv)
    if args.max_tokens < 2:
        ap.error("--max-tokens must be at least 2")
    return args


def has_tokenizer(path):
    return any(os.path.exists(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json"))


def load(args):
    import torch
    import transformers

    tok_dir = args.path if has_tokenizer(args.path) else args.tokenizer
    if tok_dir is None:
        raise SystemExit(f"hf_eval: {args.path} has no tokenizer files; give --tokenizer DIR")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.path)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    return tokenizer, model.to(device).eval(), device


def block_losses(model, ids, block, device):
    """(sum of token losses, tokens predicted) per block of `block` + 1 tokens (the last one is only a target)."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(ids) - 1, block):
            chunk = torch.tensor(ids[start:start + block + 1], device=device).unsqueeze(0)
            if chunk.shape[1] < 2:
                break
            logits = model(chunk[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1),
                                                     reduction="sum")
            out.append((float(loss), chunk.shape[1] - 1))
    return out


def main(argv=None):
    args = parse_args(argv)
    try:
        with open(args.text, encoding="utf-8") as f:
            text = f.read()
        tokenizer, model, device = load(args)
        ids = tokenizer(text)["input_ids"][:args.max_tokens]
        context = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 1024)
        block = args.block_size or context
        if block > context:
            raise ValueError(f"--block-size {block} exceeds the model's context of {context}")
        if len(ids) < 2:
            raise ValueError(f"{args.text}: fewer than 2 tokens")
        blocks = block_losses(model, ids, block, device)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"hf_eval: {args.path}: {e}", file=sys.stderr)
        return 1
    tokens = sum(n for _, n in blocks)
    loss = sum(s for s, _ in blocks) / tokens
    means = [s / n for s, n in blocks]
    if len(means) > 1:
        mu = sum(means) / len(means)
        stderr = math.sqrt(sum((m - mu) ** 2 for m in means) / (len(means) - 1) / len(means))
    else:
        stderr = None  # one block: no spread to measure
    print(f"{args.path}: {tokens} tokens in {len(blocks)} blocks of {block}, dtype {next(model.parameters()).dtype}")
    print(json.dumps({"tokens": tokens, "blocks": len(blocks), "stderr": stderr, "loss": loss}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
