#pragma once
// How the ranks of a distributed merge share the work: by bytes moved, not by tensor count. The
// tensors, in output order, form one stream of bytes (each element costs what it reads from every
// input plus what it writes to every output); rank r takes the r-th of N equal parts of that
// stream, so a tensor larger than a share is cut into element ranges of several ranks, and many
// tiny tensors go to one. Cuts fall on multiples of kSliceAlignElements (page-sized pieces for
// every dtype) except at tensor ends. The same inputs and N give the same split on every rank.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "wsm/merger/merge_engine.h"

namespace wsm::merger {

inline constexpr std::uint64_t kSliceAlignElements = 4096;

// Elements [begin, begin + count) of one tensor (index into MergePlan::output_tensors).
struct TensorSlice {
  std::size_t tensor = 0;
  std::uint64_t begin = 0, count = 0;
};

// Bytes one element of tensor t costs: read from each input (the newest only for copied tensors)
// plus written to each of `outputs` outputs.
std::vector<std::uint64_t> element_costs(const MergePlan& plan, std::span<CheckpointReader* const> inputs,
                                         std::size_t outputs);

// Rank r's slices (non-empty, in tensor order), for r = 0..ranks-1. Every element of every tensor
// belongs to exactly one rank.
std::vector<std::vector<TensorSlice>> split_work(const MergePlan& plan, std::span<const std::uint64_t> costs,
                                                 int ranks);

}  // namespace wsm::merger
