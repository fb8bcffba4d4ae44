#!/usr/bin/env python3
"""wsm_client.sharded.shard_offsets against torch.chunk (the split DTensor's Shard placement uses):
for every coordinate of 1-D and 2-D meshes, uneven and empty shares included, the block at the
offsets and lengths it returns equals the piece torch.chunk gives along each mesh dimension in
turn; a block replicated over a mesh dimension is sent only by coordinate 0 there; Partial and
unknown placements are refused. Runs with Debian's torch 1.13 (no DTensor needed)."""
import itertools
import sys

import torch

from wsm_client import sharded


class Shard:  # the duck-typed stand-ins of torch.distributed.tensor's placements
    def __init__(self, dim):
        self.dim = dim

    def is_shard(self):
        return True

    def is_replicate(self):
        return False

    def is_partial(self):
        return False


class Replicate(Shard):
    def __init__(self):
        super().__init__(None)

    def is_shard(self):
        return False

    def is_replicate(self):
        return True


class Partial(Replicate):
    def is_replicate(self):
        return False

    def is_partial(self):
        return True


def expected_block(full, mesh_shape, coordinate, placements):
    block = full
    for mesh_dim, p in enumerate(placements):
        if p.is_shard():
            pieces = torch.chunk(block, mesh_shape[mesh_dim], dim=p.dim)
            k = coordinate[mesh_dim]
            block = pieces[k] if k < len(pieces) else block.narrow(p.dim, 0, 0)
    return block


def main():
    cases = [((11, 4), (4,), [Shard(0)]), ((3, 10), (4,), [Shard(1)]), ((2, 5), (4,), [Shard(0)]),
             ((13, 7), (2, 3), [Shard(0), Shard(1)]), ((13, 7), (2, 3), [Shard(0), Shard(0)]),
             ((9, 6), (2, 2), [Replicate(), Shard(1)]), ((5, 5, 5), (3, 2), [Shard(2), Shard(-1)])]
    checked = 0
    for shape, mesh, placements in cases:
        full = torch.arange(int(torch.tensor(shape).prod())).reshape(shape)
        senders = {}
        for coord in itertools.product(*(range(n) for n in mesh)):
            offsets, lengths, sender = sharded.shard_offsets(shape, mesh, coord, placements)
            want = expected_block(full, mesh, coord, placements)
            got = full[tuple(slice(o, o + n) for o, n in zip(offsets, lengths))]
            assert tuple(want.shape) == tuple(lengths), (shape, mesh, coord, want.shape, lengths)
            assert torch.equal(got, want), (shape, mesh, coord)
            if sender and 0 not in lengths:
                senders[offsets] = senders.get(offsets, 0) + 1
            checked += 1
        covered = sum(int(torch.tensor(l).prod()) for l in
                      [sharded.shard_offsets(shape, mesh, c, placements)[1] for c in itertools.product(*(range(n) for n in mesh))
                       if sharded.shard_offsets(shape, mesh, c, placements)[2]])
        assert covered == full.numel(), (shape, mesh, covered)  # the senders' blocks tile the tensor once
        assert all(v == 1 for v in senders.values()), senders
    for bad in ([Partial()], [object()]):
        try:
            sharded.shard_offsets((4,), (2,), (0,), bad)
        except (TypeError, AttributeError):
            continue
        sys.exit(f"placement {bad} was not refused")
    assert sharded.entry_name("w", (4, 0), (3, 5)) == "w[4:7,0:5]"
    print(f"{checked} mesh coordinates checked against torch.chunk")


if __name__ == "__main__":
    main()
