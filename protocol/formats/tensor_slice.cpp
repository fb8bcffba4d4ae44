#include "wsm/formats/tensor_slice.h"

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace wsm {

namespace {
std::string show(std::span<const std::int64_t> v) { return shape_text(v); }
// End of [offset, offset + length): printed without computing it in int64 (a refused slice's
// sum may pass INT64_MAX).
std::string end_text(std::int64_t offset, std::int64_t length) {
  if (offset < 0 || length < 0) return std::to_string(offset) + "+" + std::to_string(length);
  return std::to_string(static_cast<std::uint64_t>(offset) + static_cast<std::uint64_t>(length));
}
std::string range_text(const TensorSlice& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.offsets.size(); ++i) {
    if (i) r += ',';
    r += std::to_string(s.offsets[i]);
    r += ':';
    r += i < s.lengths.size() ? end_text(s.offsets[i], s.lengths[i]) : "?";
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

namespace {
// Work allowed per block for the overlap check (sorts and pairwise comparisons, see below).
constexpr std::uint64_t kTilingWorkPerBlock = 256;

// Overlap check of valid, non-empty blocks of one global shape, in bounded work: the blocks are
// split along cuts no block crosses (in any dimension, all cuts of one dimension at once), and
// each group that no cut separates is swept pairwise. Every real layout (row, column or grid
// splits, flat FSDP shards) falls apart into single blocks in O(d n log n); a crafted layout that
// would need more than the work budget is refused rather than checked for minutes.
class OverlapCheck {
 public:
  OverlapCheck(std::span<const TensorSlice> s, std::size_t n)
      : s_(s), rank_(s.empty() ? 0 : s[0].global_shape.size()),
        budget_(kTilingWorkPerBlock * std::max<std::uint64_t>(n, 1) + (1u << 20)) {}

  std::optional<std::string> run(std::vector<std::size_t> blocks) {
    std::vector<std::vector<std::size_t>> todo;
    todo.push_back(std::move(blocks));
    while (!todo.empty()) {
      auto group = std::move(todo.back());
      todo.pop_back();
      if (group.size() < 2) continue;
      if (rank_ == 0) return "slices " + range_text(s_[group[0]]) + " and " + range_text(s_[group[1]]) + " overlap";
      if (split(group, todo)) continue;
      if (auto problem = sweep(group)) return problem;
    }
    return std::nullopt;
  }

 private:
  std::int64_t start(std::size_t i, std::size_t d) const { return s_[i].offsets[d]; }
  std::int64_t end(std::size_t i, std::size_t d) const { return s_[i].offsets[d] + s_[i].lengths[d]; }
  void charge(std::uint64_t work) {
    spent_ += work;
    if (spent_ > budget_) throw std::length_error("budget");
  }
  void sort_by(std::vector<std::size_t>& g, std::size_t d) {
    charge(g.size() * (std::bit_width(g.size()) + 1));
    std::stable_sort(g.begin(), g.end(), [&](auto a, auto b) { return start(a, d) < start(b, d); });
  }
  // Splits the group at every cut of the first dimension that has one; false when none has.
  bool split(std::vector<std::size_t>& g, std::vector<std::vector<std::size_t>>& todo) {
    for (std::size_t d = 0; d < rank_; ++d) {
      sort_by(g, d);
      std::vector<std::size_t> part;
      std::int64_t reach = end(g[0], d);
      bool cut = false;
      for (auto i : g) {
        if (!part.empty() && start(i, d) >= reach) {
          todo.push_back(std::move(part));
          part.clear();
          cut = true;
        }
        reach = std::max(reach, end(i, d));
        part.push_back(i);
      }
      if (cut) {
        todo.push_back(std::move(part));
        return true;
      }
    }
    return false;
  }
  // A group no cut separates (an overlap, or a pinwheel-like layout): pairs still open in dim 0.
  std::optional<std::string> sweep(std::vector<std::size_t>& g) {
    sort_by(g, 0);
    std::vector<std::size_t> open;
    for (auto i : g) {
      std::erase_if(open, [&](std::size_t j) { return end(j, 0) <= start(i, 0); });
      charge(open.size() + 1);
      for (auto j : open)
        if (overlap(s_[i], s_[j])) return "slices " + range_text(s_[j]) + " and " + range_text(s_[i]) + " overlap";
      open.push_back(i);
    }
    return std::nullopt;
  }

  std::span<const TensorSlice> s_;
  std::size_t rank_;
  std::uint64_t budget_, spent_ = 0;
};
}  // namespace

std::optional<std::string> tiling_problem(std::span<const TensorSlice> slices, bool require_cover) {
  if (slices.empty()) return "no slices";
  std::vector<std::size_t> blocks;  // non-empty ones (empty blocks overlap nothing)
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < slices.size(); ++i) {
    if (slices[i].global_shape != slices[0].global_shape)
      return "global shape " + show(slices[i].global_shape) + " differs from " + show(slices[0].global_shape);
    if (element_count(slices[i].lengths) != 0) blocks.push_back(i);
  }
  try {
    if (auto problem = OverlapCheck(slices, blocks.size()).run(blocks)) return problem;
  } catch (const std::length_error&) {
    return std::to_string(blocks.size()) + " slices laid out too intricately to check for overlaps (no cut separates "
           "them in any dimension); send row, column or grid blocks";
  }
  for (auto i : blocks) covered += element_count(slices[i].lengths);  // no overlap: at most the total
  const auto total = element_count(slices[0].global_shape);
  if (require_cover && covered != total)
    return "slices cover " + std::to_string(covered) + " of the " + std::to_string(total) + " elements of " +
           show(slices[0].global_shape) + " (a gap)";
  return std::nullopt;
}

}  // namespace wsm
