#pragma once
// Sharded training jobs (protocol version 2): each rank sends only the slices it holds, and the
// daemon of its node combines the parts of its local ranks into one checkpoint of slices, merged
// where they lie (docs/protocol.md, "Sharded jobs"). This file: a rank's declaration from its
// Hello, and the combination of a step's rank parts with every consistency check.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "merger/daemon/stored_checkpoint.h"
#include "wsm/formats/part_layout.h"
#include "wsm/wire/wire.h"

namespace wsm::merger {

// Blocks one rank may declare for one tensor, and a node's ranks together in one step (bound the
// daemon's tiling checks: O(n log n) in the blocks of a tensor, tensor_slice.h).
inline constexpr int kMaxSlicesPerTensor = 4096;
inline constexpr std::size_t kMaxSlicesPerTensorPerStep = 1 << 16;

// One rank of a sharded run, as its Hello declares it.
struct GroupMember {
  int rank = 0;
  int world_size = 1;
  int local_world_size = 1;
  std::shared_ptr<const std::vector<PartEntry>> entries;  // one per manifest tensor, in order
};

// Reads Hello.group and the manifest's slices, and renames the manifest's tensors to their slice
// entries (slice_entry_name), so the manifest checks and the assembler treat each slice as a
// tensor. A tensor without slice fields is the whole tensor. Throws ProtocolError(BAD_REQUEST).
GroupMember group_member_from_hello(v1::Hello& hello);

// A rank's verified part of one step.
struct RankPart {
  std::string peer;
  GroupMember member;
  std::shared_ptr<StoredCheckpoint> part;
  std::uint64_t total_bytes = 0;
  std::uint64_t checksum = 0;  // CheckpointEnd's: equal for an identical resend
};

// The node's checkpoint from its ranks' parts (any order): slices as tensors, a replicated tensor
// once (the lowest rank's; every other copy must hash equal), and the layout. Checks that the
// ranks agree on world sizes, and per tensor on dtype and global shape, that no slices overlap,
// and, when the node holds every rank of the job, that they tile each tensor exactly (across
// nodes, readers check that). Throws ProtocolError(SLICE_MISMATCH) naming rank and tensor, and
// for more than kMaxSlicesPerTensorPerStep blocks of one tensor.
std::shared_ptr<StoredCheckpoint> combine_parts(const std::string& run_id, std::vector<const RankPart*> parts);

}  // namespace wsm::merger
