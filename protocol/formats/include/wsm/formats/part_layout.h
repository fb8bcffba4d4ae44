#pragma once
// The layout of one part of a multi-part checkpoint (docs/checkpoint-format.md, "Multi-part
// checkpoints"): which ranks of a sharded job the part holds, and for each of its tensors (named
// by slice_entry_name) the global tensor and the block of it. Kept as JSON in the part's metadata
// under kPartLayoutKey, and on the daemon's window checkpoints of a sharded run.
#include <string>
#include <vector>

#include "wsm/formats/tensor_slice.h"

namespace wsm {

inline constexpr const char* kPartLayoutKey = "wsm.part";
inline constexpr int kPartLayoutVersion = 1;

struct PartEntry {
  std::string entry;  // the tensor's name in the part: slice_entry_name(name, slice)
  std::string name;   // the global tensor
  TensorSlice slice;
  bool operator==(const PartEntry&) const = default;
};

struct PartLayout {
  std::string run_id;
  int world_size = 1;
  int local_world_size = 1;
  std::vector<int> ranks;  // the ranks whose slices this part holds, ascending
  std::vector<PartEntry> entries;
  bool operator==(const PartLayout&) const = default;
};

std::string layout_to_json(const PartLayout& layout);
// Throws wsm::Error naming `where` when the text is not a layout of this version.
PartLayout layout_from_json(const std::string& text, const std::string& where);

// File name of the part holding these ranks: part-rank<lowest, 5 digits>.h5.
std::string part_file_name(const PartLayout& layout);

}  // namespace wsm
