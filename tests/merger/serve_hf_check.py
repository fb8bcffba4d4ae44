#!/usr/bin/env python3
"""Driven by test_serve_formats.cpp: reads the daemon's outputs with Hugging Face's `safetensors`
package (and transformers' AutoConfig when installed), never with wsm, and checks every merged
tensor against the float64 weighted sum of the test formula (serve_test_util.h's tensor_value),
with the weights and source steps each output's index record names, and the model metadata the
client sent at Hello (MODEL_METADATA, test_serve_formats.cpp's) in every output's metadata.

usage: serve_hf_check.py OUT_DIR FORMAT TEMPLATE_DIR"""
import json
import os
import sys

import numpy as np
import safetensors.numpy as stnp

SHAPES = [(64, 33), (100,)]
MODEL_METADATA = {"hf.config": json.dumps({"model_type": "gpt2", "n_layer": 1}), "note": "sent at hello"}


def value(t, step, n):
    i = np.arange(n, dtype=np.float64)
    return np.sin(0.001 * i * (t + 1) + 0.01 * step) + 0.001 * step


def load(path, fmt):
    """(tensors, metadata): the safetensors file's __metadata__, or the HF index's metadata."""
    if fmt == "safetensors":
        from safetensors import safe_open
        with safe_open(path, "np") as f:
            return stnp.load_file(path), {"metadata": f.metadata()}
    with open(os.path.join(path, "model.safetensors.index.json")) as f:
        index = json.load(f)
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(stnp.load_file(os.path.join(path, shard)))
    assert set(tensors) == set(index["weight_map"]), (sorted(tensors), index["weight_map"])
    return tensors, index


def main():
    out, fmt, template = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(os.path.join(out, "index.json")) as f:
        records = json.load(f)["outputs"]
    assert records, "no outputs"
    for rec in records:
        path = rec["path"]
        tensors, index = load(path, fmt)
        for t, shape in enumerate(SHAPES):
            n = int(np.prod(shape))
            got = tensors[f"layer{t}.weight"]
            assert got.shape == shape and got.dtype == np.float32, (path, got.shape, got.dtype)
            ref = sum(w * value(t, s, n) for w, s in zip(rec["weights"], rec["sources"]))
            err = np.max(np.abs(got.reshape(-1).astype(np.float64) - ref))
            assert err < 2e-6, (path, t, err)
        assert int(tensors["step_counter"][0]) == rec["step"], path
        model = {k: v for k, v in index["metadata"].items()
                 if not k.startswith("wsm.") and k not in ("format", "total_size")}
        assert model == MODEL_METADATA, (path, model)
        if fmt == "hf":
            meta = index["metadata"]
            record = json.loads(meta["wsm.provenance"])
            assert [s["weight"] for s in record["sources"]] == rec["weights"], meta
            for name in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
                with open(os.path.join(path, name), "rb") as a, open(os.path.join(template, name), "rb") as b:
                    assert a.read() == b.read(), name
            # config.json: the template's, with the dtype written (f32) under both names.
            with open(os.path.join(path, "config.json")) as a, open(os.path.join(template, "config.json")) as b:
                want = dict(json.load(b), torch_dtype="float32", dtype="float32")
                assert json.load(a) == want, path
            assert not os.path.exists(os.path.join(path, "model.safetensors")), "template weights copied"
            try:
                import transformers
                cfg = transformers.AutoConfig.from_pretrained(path)
                assert cfg.model_type == "gpt2", cfg
            except ImportError:
                pass
        print("ok", path, flush=True)
    print(f"{len(records)} outputs checked with safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
