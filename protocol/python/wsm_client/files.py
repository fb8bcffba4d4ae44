"""Reading any checkpoint wsm writes (docs/checkpoint-format.md) into a state dict.

    sd = wsm_client.load_state_dict("merged/run/1-sqrt_800/step_000000012000.h5")
    model.load_state_dict(sd)

Formats: wsm's HDF5 (bf16 stored as raw uint16 with wsm_dtype="bf16"; names escaped with %2F/%2E/%25
and restored here), other HDF5 files (every dataset, named by its path), safetensors, sharded
safetensors (a directory, or its *.safetensors.index.json, as Hugging Face writes them:
model-0000k-of-0000N.safetensors + model.safetensors.index.json), and the step directories of
sharded jobs (part-rank*.h5, multipart.py): whole tensors put together from the parts, checked for
completeness. A single part file gives whole tensors when it holds every rank, else an error that
names its directory (never slice-named tensors). Values are torch tensors when torch
is importable (bf16 as torch.bfloat16), else numpy arrays (bf16 widened exactly to float32, since numpy
has no bfloat16). Tensor order is the checkpoint's order.
"""
import json
import os
import pathlib
import re

import numpy as np

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
MAX_HEADER = 100_000_000  # the safetensors reference limit

SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}


class CheckpointFileError(ValueError):
    """A file or directory that is not a checkpoint wsm can read, with the reason."""


from .multipart import PART_LAYOUT_KEY, assemble, layout_of, part_files  # noqa: E402 - needs the error above


def load_state_dict(path, framework="auto"):
    """{name: tensor} of a checkpoint file or directory. framework: "auto" (torch when importable),
    "torch" or "numpy"."""
    return load_checkpoint(path, framework)[0]


def load_checkpoint(path, framework="auto"):
    """(state dict, metadata) of a checkpoint; metadata holds the strings and numbers stored with it
    (wsm.step, wsm.tokens, wsm.lr, wsm.run_id, wsm.merge.*, ...)."""
    torch = _framework(framework)
    arrays, bf16, meta = _read(pathlib.Path(path))
    return {name: _tensor(a, name in bf16, torch) for name, a in arrays.items()}, meta


def read_metadata(path):
    """The metadata of a checkpoint file or directory, without reading its tensors: safetensors
    __metadata__, HDF5 root attributes, a sharded set's index metadata over its first shard's, or a
    multi-part step directory's first part (every part records the same provenance)."""
    path = pathlib.Path(path)
    kind = _kind(path)
    if kind == "multipart":
        meta = read_metadata(part_files(path)[0])
        meta.pop(PART_LAYOUT_KEY, None)
        return meta
    if kind == "sharded":
        return _sharded_metadata(path)
    if kind == "hdf5":
        with _h5py(path).File(path, "r") as f:
            return {k: _attr(v) for k, v in f.attrs.items()}
    return _safetensors_header(path)[1]


def read_provenance(path):
    """How a merged checkpoint was made: the `wsm.provenance` record (docs/checkpoint-format.md,
    "Provenance": tool, spec, window, sources with their weights, dtype, method, ...) as a dict, with
    "wsm_version" added. Raises CheckpointFileError for a checkpoint wsm did not merge."""
    meta = read_metadata(path)
    if "wsm.provenance" not in meta:
        raise CheckpointFileError(f"{path}: no wsm.provenance record (not a checkpoint merged by wsm)")
    try:
        record = json.loads(meta["wsm.provenance"])
    except ValueError as e:
        raise CheckpointFileError(f"{path}: wsm.provenance is not JSON ({e})") from None
    record["wsm_version"] = meta.get("wsm.version")
    return record


def _framework(framework):
    if framework not in ("auto", "torch", "numpy"):
        raise ValueError(f"load_state_dict: framework {framework!r} is not auto, torch or numpy")
    if framework == "numpy":
        return None
    try:
        import torch
        return torch
    except ImportError:
        if framework == "torch":
            raise
        return None


def _tensor(a, is_bf16, torch):
    if torch is None:
        return (a.astype(np.uint32) << 16).view(np.float32) if is_bf16 else a
    if is_bf16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    try:
        return torch.from_numpy(a)
    except TypeError:  # uint16/32/64 on torch releases without them: kept as numpy
        return a


def _kind(path):
    """"multipart", "sharded", "hdf5" or "safetensors"; a torch.save file or a missing path is an error."""
    if path.is_dir() and part_files(path) and not any(path.glob("*.safetensors.index.json")):
        return "multipart"
    if path.is_dir() or path.name.endswith(".safetensors.index.json"):
        return "sharded"
    if not path.is_file():
        raise CheckpointFileError(f"{path}: no such file or directory")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_SIGNATURE:
        return "hdf5"
    if head.startswith(ZIP_SIGNATURE) or head[:1] == b"\x80":
        raise CheckpointFileError(f"{path}: a torch.save (pickle) file, not safetensors or HDF5; convert it with "
                                  f"wsm_client.convert_torch_checkpoint({str(path)!r}) or "
                                  f"`python -m wsm_client.convert {path}`")
    return "safetensors"


def _h5py(path):
    try:
        import h5py
        return h5py
    except ImportError:
        raise CheckpointFileError(f"{path}: reading HDF5 needs h5py (pip install h5py)") from None


def _read(path):
    kind = _kind(path)
    if kind == "multipart":
        return _read_multipart(path)
    if kind == "sharded":
        return _read_sharded(path)
    if kind == "hdf5":
        arrays, bf16, meta = _read_hdf5(path)
        layout = layout_of(meta, str(path))
        if layout is None:
            return arrays, bf16, meta
        held = set(layout["ranks"])
        if held != set(range(layout["world_size"])):
            raise CheckpointFileError(
                f"{path}: one part of a multi-part checkpoint (ranks {','.join(map(str, sorted(held)))} of "
                f"{layout['world_size']}); read its step directory {path.parent} for whole tensors")
        return assemble([(path.name, arrays, bf16, meta, layout)], str(path))
    arrays, meta = read_safetensors(path)
    return arrays, {n for n, dt in meta.pop("__dtypes__").items() if dt == "BF16"}, meta


def _safetensors_header(path):
    """(tensor entries, metadata, offset of the data) of a safetensors file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointFileError(f"{path}: {size} bytes, too short for safetensors")
        n = int.from_bytes(raw, "little")
        if n > MAX_HEADER or n > size - 8:
            raise CheckpointFileError(f"{path}: not safetensors (header length {n} exceeds the limit "
                                      f"or the file of {size} bytes)")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise CheckpointFileError(f"{path}: safetensors header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointFileError(f"{path}: safetensors header is not a JSON object")
    meta = dict(header.pop("__metadata__", None) or {})
    return header, meta, 8 + n


def read_safetensors(path):
    """({name: numpy array}, metadata) of one safetensors file; metadata["__dtypes__"] holds each
    tensor's safetensors dtype name (BF16 arrays hold the raw bits as uint16)."""
    size = os.path.getsize(path)
    header, meta, base = _safetensors_header(path)
    with open(path, "rb") as f:
        entries = sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])
        arrays, dtypes = {}, {}
        for name, e in entries:
            if e.get("dtype") not in SAFETENSORS_DTYPES:
                raise CheckpointFileError(f"{path}: tensor {name!r}: dtype {e.get('dtype')!r} is not supported")
            dtype = np.dtype(SAFETENSORS_DTYPES[e["dtype"]])
            begin, end = e["data_offsets"]
            count = int(np.prod(e["shape"], dtype=np.int64))
            if end - begin != count * dtype.itemsize or base + end > size or begin < 0:
                raise CheckpointFileError(f"{path}: tensor {name!r}: data_offsets {e['data_offsets']} do not "
                                          f"match its shape {e['shape']} or the file size")
            buf = bytearray(end - begin)
            f.seek(base + begin)
            if f.readinto(buf) != len(buf):
                raise CheckpointFileError(f"{path}: tensor {name!r}: truncated")
            arrays[name] = np.frombuffer(buf, dtype=dtype.newbyteorder("<")).reshape(e["shape"])
            dtypes[name] = e["dtype"]
    meta["__dtypes__"] = dtypes
    return arrays, meta


def _shard_index(path):
    """(folder, index file or None, shard names, the index's metadata) of a sharded set."""
    folder = path if path.is_dir() else path.parent
    index = path if not path.is_dir() else None
    if index is None:
        found = sorted(folder.glob("*.safetensors.index.json"))
        index = folder / "model.safetensors.index.json" if len(found) > 1 else (found[0] if found else None)
    if index is not None:
        try:
            doc = json.loads(index.read_text())
        except (OSError, ValueError) as e:
            raise CheckpointFileError(f"{index}: cannot read the shard index ({e})") from None
        shards = sorted(set(doc.get("weight_map", {}).values()))
        index_meta = doc.get("metadata") or {}
    else:
        shards = sorted(p.name for p in folder.glob("*.safetensors"))
        index_meta = {}
        if not shards:
            others = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".h5"))
            raise CheckpointFileError(f"{folder}: no *.safetensors shards" +
                                      (f" (found {', '.join(others)}: give the file itself, or convert torch "
                                       f"files with wsm_client.convert_torch_checkpoint)" if others else ""))
    return folder, index, shards, index_meta


def _sharded_metadata(path):
    folder, index, shards, index_meta = _shard_index(path)
    meta = _safetensors_header(folder / shards[0])[1] if shards and (folder / shards[0]).is_file() else {}
    meta.update({k: v for k, v in index_meta.items() if k != "total_size"})
    return meta


def _read_sharded(path):
    folder, index, shards, index_meta = _shard_index(path)
    meta = {}
    arrays, bf16 = {}, set()
    for i, shard in enumerate(shards):
        if not (folder / shard).is_file():
            raise CheckpointFileError(f"{folder / shard}: shard named in {index} is missing")
        a, m = read_safetensors(folder / shard)
        bf16.update(n for n, dt in m.pop("__dtypes__").items() if dt == "BF16")
        for name in a:
            if name in arrays:
                raise CheckpointFileError(f"{folder}: tensor {name!r} is in two shards")
        arrays.update(a)
        if i == 0:
            meta = m
    meta.update({k: v for k, v in index_meta.items() if k != "total_size"})
    return arrays, bf16, meta


def _read_multipart(folder):
    parts = []
    for file in part_files(folder):
        arrays, bf16, meta = _read_hdf5(file)
        layout = layout_of(meta, str(file))
        if layout is None:
            raise CheckpointFileError(f"{file}: not a part of a multi-part checkpoint (no {PART_LAYOUT_KEY} metadata)")
        parts.append((file.name, arrays, bf16, meta, layout))
    return assemble(parts, str(folder))


_UNESCAPE = {"%25": "%", "%2F": "/", "%2E": "."}


def _unescape(name):
    return re.sub(r"%(25|2F|2E)", lambda m: _UNESCAPE[m.group(0)], name)


def _read_hdf5(path):
    h5py = _h5py(path)
    arrays, bf16 = {}, set()
    with h5py.File(path, "r") as f:
        meta = {k: _attr(v) for k, v in f.attrs.items()}
        if "wsm.format_version" in f.attrs:
            if "tensors" not in f:
                raise CheckpointFileError(f"{path}: a wsm file without its /tensors group")
            group = f["tensors"]
            names = []
            group.id.links.iterate(lambda n: names.append(n.decode()), idx_type=h5py.h5.INDEX_CRT_ORDER)
            items = [(_unescape(n), group[n]) for n in names]
        else:
            items = []
            f.visititems(lambda n, obj: items.append((n, obj)) if isinstance(obj, h5py.Dataset) else None)
            items.sort(key=lambda kv: kv[0])
        for name, ds in items:
            a = np.ascontiguousarray(ds[()])
            if _attr(ds.attrs.get("wsm_dtype", "")) == "bf16" and a.dtype.itemsize == 2 and a.dtype.kind in "iu":
                a = a.view(np.uint16)
                bf16.add(name)
            elif a.dtype.kind not in "fiub":
                raise CheckpointFileError(f"{path}: dataset {name!r} has element type {a.dtype}, not a tensor")
            arrays[name] = a.astype(a.dtype.newbyteorder("="), copy=False)
    return arrays, bf16, meta


def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v
