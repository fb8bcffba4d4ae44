#pragma once
// A multi-part checkpoint: a directory of part-rank<R>.h5 files written by the merger daemons of a
// sharded job (one per node), each holding the merged slices of its node's ranks
// (part_layout.h). Opened as one checkpoint of whole tensors once every part is present; slices
// are read in place from the parts, never assembled whole in memory
// (docs/checkpoint-format.md, "Multi-part checkpoints").
#include <filesystem>
#include <memory>

#include "wsm/formats/checkpoint.h"

namespace wsm {

// A directory holding at least one part-rank*.h5 file (temporaries aside).
bool is_multipart_dir(const std::filesystem::path& dir);

// Checks the set before returning: every rank of the job in exactly one part, the parts from the
// same run, step and merge (source steps, weights), each tensor's slices of one dtype and global
// shape tiling it exactly, replicated copies equal. Throws wsm::Error naming the directory, part
// or tensor otherwise (an incomplete set names the missing ranks).
std::unique_ptr<CheckpointReader> open_multipart(const std::filesystem::path& dir);

}  // namespace wsm
