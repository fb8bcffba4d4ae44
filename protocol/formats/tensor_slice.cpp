#include "wsm/formats/tensor_slice.h"

#include <algorithm>

namespace wsm {

namespace {
std::string show(std::span<const std::int64_t> v) { return shape_text(v); }
std::string range_text(const TensorSlice& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.offsets.size(); ++i) {
    if (i) r += ',';
    r += std::to_string(s.offsets[i]);
    r += ':';
    r += std::to_string(s.offsets[i] + s.lengths[i]);
  }
  return r + "]";
}
bool overlap(const TensorSlice& a, const TensorSlice& b) {
  for (std::size_t d = 0; d < a.offsets.size(); ++d)
    if (a.offsets[d] >= b.offsets[d] + b.lengths[d] || b.offsets[d] >= a.offsets[d] + a.lengths[d]) return false;
  return true;
}
}  // namespace

std::string shape_text(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string slice_entry_name(const std::string& name, const TensorSlice& slice) { return name + range_text(slice); }

std::uint64_t element_count(std::span<const std::int64_t> shape) {
  std::uint64_t n = 1;
  for (auto d : shape) n *= static_cast<std::uint64_t>(d);
  return n;
}

std::optional<std::string> slice_problem(const TensorSlice& s) {
  const auto rank = s.global_shape.size();
  if (s.offsets.size() != rank || s.lengths.size() != rank)
    return "slice " + show(s.offsets) + "+" + show(s.lengths) + " has not the " + std::to_string(rank) +
           " dimensions of the global shape " + show(s.global_shape);
  std::uint64_t n = 1;
  for (std::size_t d = 0; d < rank; ++d) {
    const auto g = s.global_shape[d], o = s.offsets[d], l = s.lengths[d];
    if (g < 0 || o < 0 || l < 0) return "negative global shape, offset or length in slice " + range_text(s);
    if (l > g || o > g - l)
      return "slice " + range_text(s) + " reaches past the global shape " + show(s.global_shape);
    if (g > 0 && n > UINT64_MAX / static_cast<std::uint64_t>(g)) return "global shape " + show(s.global_shape) + " overflows";
    n *= static_cast<std::uint64_t>(std::max<std::int64_t>(g, 1));
  }
  if (s.replicated && (s.lengths != s.global_shape || std::any_of(s.offsets.begin(), s.offsets.end(), [](auto o) { return o != 0; })))
    return "replicated slice " + range_text(s) + " is not the whole tensor " + show(s.global_shape);
  return std::nullopt;
}

std::optional<std::string> tiling_problem(std::span<const TensorSlice> slices, bool require_cover) {
  if (slices.empty()) return "no slices";
  std::vector<std::size_t> order;  // non-empty blocks (empty ones overlap nothing), by start in dim 0
  for (std::size_t i = 0; i < slices.size(); ++i) {
    if (slices[i].global_shape != slices[0].global_shape)
      return "global shape " + show(slices[i].global_shape) + " differs from " + show(slices[0].global_shape);
    if (element_count(slices[i].lengths) != 0) order.push_back(i);
  }
  const bool scalar = slices[0].global_shape.empty();
  auto start = [&](std::size_t i) { return scalar ? 0 : slices[i].offsets[0]; };
  auto end = [&](std::size_t i) { return scalar ? 1 : slices[i].offsets[0] + slices[i].lengths[0]; };
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return start(a) < start(b); });
  // Sweep over dim 0: a block is compared only with the earlier ones still open there, so a split
  // along dim 0 (the usual FSDP one) costs n log n, not n^2.
  std::uint64_t covered = 0;
  std::vector<std::size_t> open;
  for (auto i : order) {
    std::erase_if(open, [&](std::size_t j) { return end(j) <= start(i); });
    for (auto j : open)
      if (overlap(slices[i], slices[j]))
        return "slices " + range_text(slices[j]) + " and " + range_text(slices[i]) + " overlap";
    open.push_back(i);
    covered += element_count(slices[i].lengths);
  }
  const auto total = element_count(slices[0].global_shape);
  if (require_cover && covered != total)
    return "slices cover " + std::to_string(covered) + " of the " + std::to_string(total) + " elements of " +
           show(slices[0].global_shape) + " (a gap)";
  return std::nullopt;
}

}  // namespace wsm
