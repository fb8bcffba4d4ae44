"""Sharded training jobs (protocol version 2, docs/protocol.md "Sharded jobs").

Every rank streams only the slices it holds to its node's `wsm serve`; the daemon completes a step
once its local ranks have delivered, merges each slice where it lies, and writes its node's part
of every merged output (docs/checkpoint-format.md, "Multi-part checkpoints").

    from wsm_client import MergerClient
    merger = MergerClient("tcp://127.0.0.1:5555", run_id="run", rank=rank, world_size=world)
    merger.send_checkpoint(step, tokens, lr, model.state_dict())   # DTensors: placements say it
    merger.send_checkpoint(step, tokens, lr, {"w": block}, slices={"w": ((1024, 512), (256, 0))})

A DTensor (FSDP2, tensor parallel) sends its local shard at the offsets its placements give
(Shard(d) splits as torch.chunk does; a block replicated over some mesh dimensions is sent by the
rank at coordinate 0 of those; a tensor replicated everywhere is sent by every rank, marked
replicated, and checked equal by the daemon). A plain tensor is the block of the global tensor
given by `slices[name] = (global_shape, offsets)` (the block's shape is the array's), or the whole
tensor when it has no entry; `slices[name] = REPLICATED` marks a whole copy every rank sends.
A tensor a rank does not hold is simply not in its `tensors`. Several blocks of one tensor: pass
`tensors` as a list of (name, array, (global_shape, offsets)) triples.
"""
import os

from . import client as _client

SHARDED_PROTOCOL_VERSION = 2
REPLICATED = "replicated"


def entry_name(name, offsets, lengths):
    """The slice's name on the wire: name[o0:e0,o1:e1] (protocol/tensor_slice.h)."""
    return name + "[" + ",".join(f"{o}:{o + n}" for o, n in zip(offsets, lengths)) + "]"


def shard_offsets(global_shape, mesh_shape, coordinate, placements):
    """(offsets, lengths, sender) of the block a mesh coordinate holds under DTensor placements.

    Placements are read by duck typing (is_shard()/dim, is_replicate(), is_partial()), so this is
    the same computation for torch's DTensor and for a test's stand-ins. `sender` is False when the
    block is replicated over a mesh dimension and this coordinate is not 0 there (another rank
    sends it).
    """
    offsets = [0] * len(global_shape)
    lengths = list(global_shape)
    sender = True
    for mesh_dim, p in enumerate(placements):
        if p.is_partial():
            raise TypeError("a Partial placement holds unreduced values; reduce (redistribute) the tensor first")
        if p.is_replicate():
            sender = sender and coordinate[mesh_dim] == 0
            continue
        if not p.is_shard() or type(p).__name__ != "Shard":
            raise TypeError(f"placement {p!r} is not supported (Shard, Replicate)")
        n, d = mesh_shape[mesh_dim], p.dim % len(global_shape)
        chunk = -(-lengths[d] // n)  # torch.chunk: ceil-sized pieces, the last ones short or empty
        start = min(coordinate[mesh_dim] * chunk, lengths[d])
        offsets[d] += start
        lengths[d] = min(chunk, lengths[d] - start)
    return tuple(offsets), tuple(lengths), sender


def _dtensor_block(name, t):
    """(global_shape, offsets, replicated, local tensor) of a DTensor, or None when another rank sends it."""
    placements = tuple(t.placements)
    global_shape = tuple(int(x) for x in t.shape)
    local = t.to_local()
    if all(p.is_replicate() for p in placements):
        return global_shape, (0,) * len(global_shape), True, local
    coordinate = t.device_mesh.get_coordinate()
    if coordinate is None:  # this rank is not in the tensor's mesh
        return None
    try:
        offsets, lengths, sender = shard_offsets(global_shape, tuple(t.device_mesh.shape), coordinate, placements)
    except TypeError as e:
        raise TypeError(f"tensor {name!r}: {e}") from None
    if tuple(local.shape) != lengths:
        raise ValueError(f"tensor {name!r}: local shard shape {tuple(local.shape)} is not the {lengths} its placements give")
    if not sender or 0 in lengths:  # another rank sends it; or an empty share of an uneven split
        return None
    return global_shape, offsets, False, local


def _is_dtensor(value):
    cls = type(value)
    return cls.__name__ == "DTensor" and cls.__module__.startswith("torch.distributed")


def blocks(tensors, slices=None):
    """[(entry name, name, global shape, offsets, replicated, local array)] of what this rank sends."""
    slices = slices or {}
    items = tensors.items() if hasattr(tensors, "items") else tensors
    out = []
    for item in items:
        name, value, *given = item
        name = str(name)
        spec = given[0] if given else slices.get(name)
        if _is_dtensor(value):
            if spec is not None:
                raise ValueError(f"tensor {name!r}: a DTensor's placements give its slice; drop its slices entry")
            b = _dtensor_block(name, value)
            if b is None:
                continue
            global_shape, offsets, replicated, value = b
        else:
            shape = tuple(int(x) for x in getattr(value, "shape", ()))
            if spec is None or spec == REPLICATED:
                global_shape, offsets, replicated = shape, (0,) * len(shape), spec == REPLICATED
            else:
                global_shape, offsets = (tuple(int(x) for x in v) for v in spec)
                replicated = False
                if len(global_shape) != len(shape) or len(offsets) != len(shape):
                    raise ValueError(f"tensor {name!r}: slice {spec} has not the {len(shape)} dimensions of its array")
                if any(o < 0 or o + n > g for o, n, g in zip(offsets, shape, global_shape)):
                    raise ValueError(f"tensor {name!r}: block {shape} at {offsets} reaches past {global_shape}")
        lengths = tuple(int(x) for x in value.shape)
        out.append((entry_name(name, offsets, lengths), name, global_shape, offsets, replicated, value))
    return out


class MergerClient(_client.MergerClient):
    """The merger client; with rank/world_size (or slices, or DTensors) one rank of a sharded job.

    local_world_size: how many ranks send to this rank's daemon (its node); default torchrun's
    LOCAL_WORLD_SIZE, else world_size. The daemon completes a step once they all delivered, and
    acknowledges it to each; close() waits for every acknowledgement.
    """

    def __init__(self, endpoint="tcp://127.0.0.1:5555", run_id="run", *, rank=None, world_size=None,
                 local_world_size=None, **options):
        self.rank = int(rank if rank is not None else os.environ.get("RANK", 0))
        self.world_size = int(world_size if world_size is not None else os.environ.get("WORLD_SIZE", 1))
        default_local = os.environ.get("LOCAL_WORLD_SIZE", self.world_size)
        self.local_world_size = int(local_world_size if local_world_size is not None else default_local)
        if not (0 <= self.rank < self.world_size) or not (1 <= self.local_world_size <= self.world_size):
            raise ValueError(f"rank {self.rank}, world size {self.world_size}, local world size "
                             f"{self.local_world_size}: need 0 <= rank < world size, 1 <= local <= world size")
        self._slice_of = {}  # entry name -> (name, global shape, offsets, replicated)
        super().__init__(endpoint, run_id, **options)

    def send_checkpoint(self, step, tokens, lr, tensors, slices=None):
        items = list(tensors.items() if hasattr(tensors, "items") else tensors)
        sharded = self.world_size > 1 or slices or any(len(i) > 2 or _is_dtensor(i[1]) for i in items)
        if not sharded:
            return super().send_checkpoint(step, tokens, lr, items)
        parts = blocks(items, slices)
        for entry, name, global_shape, offsets, replicated, _ in parts:
            self._slice_of[entry] = (name, global_shape, offsets, replicated)
        return super().send_checkpoint(step, tokens, lr, [(entry, value) for entry, *_, value in parts])

    def _fill_hello(self, hello, snap):
        names = [n for n, _, _ in snap.manifest()]
        if not names or names[0] not in self._slice_of:
            return  # a plain (world-size-1) checkpoint
        hello.protocol_version = SHARDED_PROTOCOL_VERSION
        hello.group.rank, hello.group.world_size = self.rank, self.world_size
        hello.group.local_world_size = self.local_world_size
        for spec in hello.manifest:
            name, global_shape, offsets, replicated = self._slice_of[spec.name]
            spec.name = name
            spec.global_shape.extend(global_shape)
            spec.offsets.extend(offsets)
            spec.replicated = replicated
