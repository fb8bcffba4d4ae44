#include "merger/daemon/running_sum_plan.h"

#include <algorithm>
#include <cmath>

#include "wsm/core/error.h"

namespace wsm::merger {
namespace {

// The old tail's steps to subtract so that what stays is a prefix of `tail`, or nullopt when the
// old tail is not "a prefix of old steps, then the start of the new tail".
std::optional<std::size_t> leaving_count(const std::vector<std::int64_t>& old_tail, const std::vector<std::int64_t>& tail) {
  const auto it = std::find(old_tail.begin(), old_tail.end(), tail.front());
  if (it == old_tail.end() && tail.front() <= old_tail.back()) return std::nullopt;
  const auto leaving = static_cast<std::size_t>(it - old_tail.begin());
  const std::size_t keep = old_tail.size() - leaving;
  if (keep > tail.size() || !std::equal(it, old_tail.end(), tail.begin())) return std::nullopt;
  return leaving;
}

// The incremental plan from `state` to `tail`, or nullopt when only a rebuild gets there.
std::optional<SumUpdatePlan> incremental_plan(const SumState& state, const std::vector<std::int64_t>& tail,
                                              std::span<const std::int64_t> readable) {
  const auto leaving = leaving_count(state.tail, tail);
  if (!leaving) return std::nullopt;
  SumUpdatePlan plan;
  const std::size_t old_size = state.tail.size();
  for (std::size_t i = 0; i < *leaving; ++i) {
    const std::int64_t step = state.tail[i];
    if (!std::binary_search(readable.begin(), readable.end(), step)) return std::nullopt;  // left the window
    plan.remove.push_back({step, std::pow(state.model.ratio, static_cast<double>(old_size - 1 - i))});
  }
  plan.add.assign(tail.begin() + static_cast<std::ptrdiff_t>(old_size - *leaving), tail.end());
  if (plan.remove.size() + plan.add.size() >= tail.size()) return std::nullopt;  // a rebuild reads no more
  plan.next.updates_since_rebuild = state.updates_since_rebuild + 1;
  return plan;
}

}  // namespace

SumUpdatePlan plan_sum_update(const SumState& state, const SumModel& model, std::span<const std::int64_t> steps,
                              std::span<const double> weights, std::span<const std::int64_t> readable,
                              int rebuild_every) {
  if (steps.empty() || steps.size() != weights.size()) throw Error("running sum with no selection");
  const std::size_t tail_from = model.anchor_apart ? 1 : 0;
  std::vector<std::int64_t> tail(steps.begin() + static_cast<std::ptrdiff_t>(tail_from), steps.end());
  if (tail.empty()) throw Error("empty running-sum tail");

  std::optional<SumUpdatePlan> plan;
  if (!state.tail.empty() && state.model == model && state.updates_since_rebuild < rebuild_every)
    plan = incremental_plan(state, tail, readable);
  if (!plan) {
    plan.emplace();
    plan->rebuild = true;
    plan->add = tail;
  }
  plan->ratio = model.ratio;
  plan->next.model = model;
  plan->next.tail = std::move(tail);
  plan->scale = weights.back();
  if (model.anchor_apart) plan->anchor = SumTerm{steps.front(), weights.front()};
  return *plan;
}

}  // namespace wsm::merger
