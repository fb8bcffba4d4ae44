"""Multi-part checkpoints (docs/checkpoint-format.md, "Multi-part checkpoints"): the step directory
the daemons of a sharded job write, one part-rank<lowest>.h5 per node, each holding its ranks' slices
named `<tensor>[o0:e0,...]` and described by its `wsm.part` attribute. Read as whole tensors, after
the checks wsm's C++ reader makes (protocol/formats/multipart_checkpoint.cpp): every rank in exactly
one part, one run, world size and step, the same wsm.provenance; per tensor one dtype and global
shape, slices tiling it exactly (no overlap, no gap), replicated copies equal.
"""
import json
import pathlib

import numpy as np

from .files import CheckpointFileError as MultipartError  # one error type for every unreadable checkpoint

PART_LAYOUT_KEY = "wsm.part"


def part_files(folder):
    """The complete parts of a step directory (temporaries of a part being written are not)."""
    return sorted(p for p in pathlib.Path(folder).glob("part-rank*.h5") if ".tmp-" not in p.name and p.is_file())


def layout_of(meta, where):
    """The `wsm.part` layout of a part's metadata, or None when the file is not a part."""
    text = meta.get(PART_LAYOUT_KEY)
    if text is None:
        return None
    try:
        layout = json.loads(text)
        if layout.get("version") != 1:
            raise ValueError(f"version {layout.get('version')!r}, this reader knows 1")
        layout["world_size"], layout["ranks"] = int(layout["world_size"]), [int(r) for r in layout["ranks"]]
        for e in layout["entries"]:
            e["global_shape"], e["offsets"], e["lengths"] = ([int(x) for x in e[k]]
                                                             for k in ("global_shape", "offsets", "lengths"))
            e["replicated"] = bool(e.get("replicated", False))
    except (ValueError, KeyError, TypeError) as err:
        raise MultipartError(f"{where}: {PART_LAYOUT_KEY} is not a part layout ({err})") from None
    return layout


def assemble(parts, where):
    """Whole tensors from [(file name, arrays, bf16 names, metadata, layout)] (the parts as read):
    ({name: array}, bf16 names, metadata without wsm.part). Raises MultipartError for a set that is
    not one complete checkpoint."""
    _check_parts(parts, where)
    blocks = {}  # name -> [(file, array, entry)]
    for file, arrays, bf16, _meta, layout in parts:
        for e in layout["entries"]:
            if e["entry"] not in arrays:
                raise MultipartError(f"{where}: part {file} lists {e['entry']!r} but does not hold it")
            a = arrays[e["entry"]]
            if list(a.shape) != e["lengths"]:
                raise MultipartError(f"{where}: part {file}: tensor {e['entry']!r} has not the shape of its slice")
            blocks.setdefault(e["name"], []).append((file, a, e, e["entry"] in bf16))
    out, out_bf16 = {}, set()
    for name, bs in blocks.items():
        out[name] = _whole(name, bs, where)
        if bs[0][3]:
            out_bf16.add(name)
    meta = dict(parts[0][3])
    meta.pop(PART_LAYOUT_KEY, None)
    return out, out_bf16, meta


def _check_parts(parts, where):
    first_file, _, _, first_meta, first = parts[0]
    owner = {}
    for file, _, _, meta, layout in parts:
        if layout.get("run_id") != first.get("run_id") or layout["world_size"] != first["world_size"]:
            raise MultipartError(f"{where}: part {file} is of run {layout.get('run_id')!r} with world size "
                                 f"{layout['world_size']}, not {first.get('run_id')!r} with {first['world_size']}")
        if meta.get("wsm.step") != first_meta.get("wsm.step"):
            raise MultipartError(f"{where}: part {file} is of another step than {first_file}")
        if meta.get("wsm.provenance") != first_meta.get("wsm.provenance"):
            raise MultipartError(f"{where}: parts {first_file} and {file} disagree on wsm.provenance: "
                                 f"their daemons merged different checkpoints")
        for r in layout["ranks"]:
            if r in owner:
                raise MultipartError(f"{where}: rank {r} is in two parts, {owner[r]} and {file}")
            owner[r] = file
    missing = [str(r) for r in range(first["world_size"]) if r not in owner]
    if missing:
        raise MultipartError(f"{where}: incomplete multi-part checkpoint: no part holds ranks {','.join(missing)} "
                             f"of {first['world_size']} ({len(parts)} parts present; the others may still be "
                             f"being written)")


def _whole(name, blocks, where):
    """The tensor put together from its blocks, checked: one dtype and shape, exact tiling or equal copies."""
    shape, dtype = blocks[0][2]["global_shape"], blocks[0][1].dtype
    for file, a, e, _ in blocks:
        if e["global_shape"] != shape or a.dtype != dtype:
            raise MultipartError(f"{where}: tensor {name!r} is {dtype} {shape} in {blocks[0][0]} and "
                                 f"{a.dtype} {e['global_shape']} in {file}")
    replicated = [e["replicated"] for _, _, e, _ in blocks]
    if any(replicated) and not all(replicated):
        raise MultipartError(f"{where}: tensor {name!r}: replicated in some parts and sliced in others")
    if all(replicated):
        for file, a, _, _ in blocks[1:]:
            if a.tobytes() != blocks[0][1].tobytes():
                raise MultipartError(f"{where}: tensor {name!r}: replicated copies differ ({blocks[0][0]} vs {file})")
        return blocks[0][1]
    boxes = [(e["offsets"], e["lengths"]) for _, _, e, _ in blocks]
    problem = _tiling_problem(shape, boxes)
    if problem:
        raise MultipartError(f"{where}: tensor {name!r}: {problem}")
    full = np.empty(shape, dtype=dtype)
    for _, a, e, _ in blocks:
        full[tuple(slice(o, o + n) for o, n in zip(e["offsets"], e["lengths"]))] = a
    return full


def _tiling_problem(shape, boxes):
    """Why the blocks do not tile the tensor exactly (None when they do): one outside it, two that
    overlap, or volumes that leave a gap."""
    for offsets, lengths in boxes:
        if len(offsets) != len(shape) or any(o < 0 or n < 0 or o + n > g for o, n, g in zip(offsets, lengths, shape)):
            return f"slice at {offsets} of {lengths} is outside the tensor's {shape}"
    for i, (oa, la) in enumerate(boxes):
        for ob, lb in boxes[i + 1:]:
            if all(max(a, b) < min(a + m, b + n) for a, m, b, n in zip(oa, la, ob, lb)) and \
                    int(np.prod(la)) and int(np.prod(lb)):
                return f"slices at {oa} and {ob} overlap"
    covered = sum(int(np.prod(lengths, dtype=np.int64)) for _, lengths in boxes)
    total = int(np.prod(shape, dtype=np.int64))
    if covered != total:
        return f"its slices cover {covered} of its {total} elements (a part lacks a slice)"
    return None
