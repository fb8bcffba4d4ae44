#include "merger/offline/work_split.h"

#include <algorithm>

#include "wsm/core/error.h"

namespace wsm::merger {

std::vector<std::uint64_t> element_costs(const MergePlan& plan, std::span<CheckpointReader* const> inputs,
                                         std::size_t outputs) {
  std::vector<std::uint64_t> costs;
  for (std::size_t t = 0; t < plan.output_tensors.size(); ++t) {
    const TensorInfo& info = plan.output_tensors[t];
    std::uint64_t c = outputs * dtype_size(info.dtype);
    if (plan.copied[t]) c += dtype_size(inputs.back()->info(info.name).dtype);
    else
      for (const CheckpointReader* r : inputs) c += dtype_size(r->info(info.name).dtype);
    costs.push_back(c);
  }
  return costs;
}

std::vector<std::vector<TensorSlice>> split_work(const MergePlan& plan, std::span<const std::uint64_t> costs,
                                                 int ranks) {
  if (ranks < 1) throw Error("split_work: needs at least one rank");
  if (costs.size() != plan.output_tensors.size()) throw Error("split_work: one cost per tensor needed");
  using u128 = unsigned __int128;  // share boundaries r * total / N without overflow
  u128 total = 0;
  for (std::size_t t = 0; t < costs.size(); ++t) total += u128(costs[t]) * plan.output_tensors[t].numel();
  const auto n = std::uint64_t(ranks);

  std::vector<std::vector<TensorSlice>> split(static_cast<std::size_t>(ranks));
  u128 start = 0;  // cost before tensor t
  for (std::size_t t = 0; t < costs.size(); ++t) {
    const std::uint64_t numel = plan.output_tensors[t].numel();
    const u128 cost = costs[t];
    // The first element of tensor t owned by a rank >= r: share boundary r mapped into the tensor,
    // rounded to the alignment, clamped. Monotone in r, 0 at r = 0 and numel at r = N.
    auto cut = [&](std::uint64_t r) -> std::uint64_t {
      const u128 boundary = total * r / n;
      if (boundary <= start) return 0;
      const u128 e = (boundary - start + cost - 1) / cost;  // first element starting at or after it
      if (e >= numel) return numel;
      const std::uint64_t aligned = (std::uint64_t(e) + kSliceAlignElements / 2) / kSliceAlignElements * kSliceAlignElements;
      return std::min(aligned, numel);
    };
    std::uint64_t begin = 0;
    for (std::uint64_t r = 0; r < n; ++r) {
      const std::uint64_t end = r + 1 == n ? numel : cut(r + 1);
      if (end > begin) split[std::size_t(r)].push_back({t, begin, end - begin});
      begin = std::max(begin, end);
    }
    start += cost * numel;
  }
  return split;
}

}  // namespace wsm::merger
