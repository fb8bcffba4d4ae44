"""torch.save checkpoints (`.pt`, `pytorch_model.bin`) to safetensors, which wsm reads in place.

    wsm_client.convert_torch_checkpoint("run/pytorch_model.bin")   # -> run/model.safetensors
    python -m wsm_client.convert ckpt.pt [out.safetensors] [--key model]     (convert.py)

The file is read with torch.load(weights_only=True) only: torch's restricted unpickler, which
builds tensors and plain containers and refuses any other object, so a hostile file cannot run code
through this helper. The output is written to a temporary name, fsynced and renamed; it gets the
permissions of any new file (0644 under the usual umask 022).
"""
import argparse
import json
import os
import pathlib
import secrets

import numpy as np

_DTYPES = {  # torch dtype name -> safetensors dtype
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")


def convert_torch_checkpoint(src, dst=None, key=None):
    """Converts a torch.save file of tensors to safetensors; returns the output path.
    dst: default beside src (pytorch_model.bin -> model.safetensors, x.pt -> x.safetensors).
    key: the entry holding the state dict when the file holds more (e.g. "model"); found by itself
    among state_dict/model/model_state_dict/module when not given.
    A sharded set's index (pytorch_model.bin.index.json) converts every shard beside it and writes
    model.safetensors.index.json last; dst is then ignored and the new index returned."""
    src = pathlib.Path(src)
    if src.name.endswith(".bin.index.json"):
        return _convert_sharded(src, key)
    dst = pathlib.Path(dst) if dst else default_output(src)
    _convert_file(src, dst, key)
    return dst


def _convert_sharded(index, key):
    try:
        doc = json.loads(index.read_text())
        weight_map = doc["weight_map"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{index}: not a shard index ({e!r})") from None
    renamed = {shard: default_output(index.parent / shard).name for shard in sorted(set(weight_map.values()))}
    for shard, out in renamed.items():
        _convert_file(index.parent / shard, index.parent / out, key)
    out_index = index.parent / index.name.replace("pytorch_model.bin", "model.safetensors").replace(".bin.", ".safetensors.")
    text = json.dumps({"metadata": doc.get("metadata", {}),
                       "weight_map": {name: renamed[shard] for name, shard in weight_map.items()}}, indent=2)
    _write_atomically(out_index, text.encode(), [])
    return out_index


def _convert_file(src, dst, key):
    import torch

    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
        raise ValueError(f"{src}: torch.load(weights_only=True) refused it: {e}") from None
    state = _state_dict_of(src, obj, key, torch)
    header, blobs = {}, []
    offset = 0
    for name, t in state.items():
        dtype = str(t.dtype).replace("torch.", "")
        if dtype not in _DTYPES:
            raise ValueError(f"{src}: tensor {name!r} has dtype {dtype}, which safetensors/wsm cannot hold")
        t = t.detach().contiguous()
        raw = (t.view(torch.int16) if dtype == "bfloat16" else t).numpy().view(np.uint8).reshape(-1)
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + raw.nbytes]}
        blobs.append(raw)
        offset += raw.nbytes
    header["__metadata__"] = {"format": "pt", "wsm.converted_from": src.name}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)  # the data section starts 8-byte aligned
    _write_atomically(dst, len(text).to_bytes(8, "little") + text, blobs)


def default_output(src):
    """pytorch_model.bin -> model.safetensors, pytorch_model-00001-of-00002.bin ->
    model-00001-of-00002.safetensors, x.pt -> x.safetensors."""
    if src.name.startswith("pytorch_model") and src.suffix == ".bin":
        return src.with_name("model" + src.name[len("pytorch_model"):-len(".bin")] + ".safetensors")
    return src.with_suffix(".safetensors")


def _state_dict_of(src, obj, key, torch):
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise ValueError(f"{src}: no entry {key!r} at the top level")
        obj = obj[key]
    elif isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = [k for k in _NESTED_KEYS if isinstance(obj.get(k), dict)]
        if not nested:
            raise ValueError(f"{src}: not a state dict (top-level entries: {', '.join(map(str, obj))}); "
                             f"name the one holding the tensors with key=")
        obj = obj[nested[0]]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{src}: holds {type(obj).__name__}, not a dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{src}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    return {str(k): v for k, v in obj.items()}


def _write_atomically(dst, head, blobs):
    """head then blobs into dst: a temporary beside it, fsynced, renamed, the folder fsynced."""
    # Not mkstemp: its 0600 would make the output unreadable to the group that reads the model.
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            for b in blobs:
                f.write(memoryview(b))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        os.unlink(tmp)
        raise
    dirfd = os.open(dst.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
