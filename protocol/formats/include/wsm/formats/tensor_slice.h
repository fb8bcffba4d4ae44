#pragma once
// A block of a tensor held by one rank of a sharded job: the tensor's global shape, and per
// dimension the offset and length of the block. Merging is elementwise, so a block is merged where
// it lies; only readers put blocks back together (multipart_checkpoint.h).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace wsm {

struct TensorSlice {
  std::vector<std::int64_t> global_shape;
  std::vector<std::int64_t> offsets;
  std::vector<std::int64_t> lengths;
  bool replicated = false;  // a whole copy that every holder sends; copies must be equal
  bool operator==(const TensorSlice&) const = default;
};

// The slice's name on the wire and in a part file: `<name>[o0:e0,o1:e1]` (a scalar: `<name>[]`).
std::string slice_entry_name(const std::string& name, const TensorSlice& slice);

// What is wrong with one slice on its own (ranks differ, negative values, past the global shape,
// empty, sizes that overflow), or nothing.
std::optional<std::string> slice_problem(const TensorSlice& slice);

// Whether the blocks overlap, and with require_cover, whether they leave a gap: an exact tiling
// has no overlap and volumes summing to the tensor's. Each slice must be valid (slice_problem).
// Blocks split along any dimensions (rows, columns, grids) cost O(d n log n); the work is capped
// (a layout no cut splits that needs more is reported as too intricate to check).
std::optional<std::string> tiling_problem(std::span<const TensorSlice> slices, bool require_cover);

// "[7,5]": a shape (or offsets) in messages.
std::string shape_text(std::span<const std::int64_t> shape);

// Element count of a shape (dims assumed valid and overflow-checked by slice_problem).
std::uint64_t element_count(std::span<const std::int64_t> shape);

}  // namespace wsm
