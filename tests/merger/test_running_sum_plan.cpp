// The running-sum planner (merger/daemon/running_sum_plan.h) on its own: plans applied to scalar
// "checkpoints" in double precision give, at every step, the direct weighted sum with docs/method-guide.md's
// weights (uniform: c_j = 1/(k+1); PMA's EMA: c_0 = (1-A)^k, c_j = A (1-A)^(k-j)), whether the
// window slides by one, updates are skipped, steps leave before they can be subtracted, the
// model changes or the periodic rebuild comes due; and incremental plans read O(1) checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "merger/daemon/running_sum_plan.h"
#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"

namespace wsm::merger {
namespace {

// docs/method-guide.md's weights for k+1 checkpoints, oldest first, written out here independently.
std::vector<double> uniform_weights(std::size_t n) { return std::vector<double>(n, 1.0 / double(n)); }
std::vector<double> ema_weights(double a, std::size_t n) {
  const std::size_t k = n - 1;
  std::vector<double> c(n);
  c[0] = std::pow(1 - a, double(k));
  for (std::size_t j = 1; j <= k; ++j) c[j] = a * std::pow(1 - a, double(k - j));
  return c;
}

// Applies plans to scalar checkpoints theta(step) the way running_sum.cpp applies them to tensors.
class ScalarSum {
 public:
  explicit ScalarSum(int rebuild_every) : rebuild_every_(rebuild_every) {}
  double theta(std::int64_t step) {
    auto [it, fresh] = theta_.try_emplace(step, 0.0);
    if (fresh) it->second = std::uniform_real_distribution<double>(-1, 1)(rng_);
    return it->second;
  }
  // One update to the selection `steps` with `weights` under the spec's model; returns the output.
  double update(const MergeSpec& spec, const std::vector<std::int64_t>& steps, const std::vector<double>& weights,
                const std::vector<std::int64_t>& readable) {
    const auto model = sum_model(spec, weights);
    EXPECT_TRUE(model.has_value()) << spec.to_string();
    last = plan_sum_update(state_, *model, steps, weights, readable, rebuild_every_);
    if (last.rebuild) v_ = 0;
    for (const SumTerm& r : last.remove) v_ -= r.coefficient * theta(r.step);
    for (std::int64_t s : last.add) v_ = last.ratio * v_ + theta(s);
    state_ = last.next;
    double out = last.scale * v_;
    if (last.anchor) out += last.anchor->coefficient * theta(last.anchor->step);
    return out;
  }
  double reference(const std::vector<std::int64_t>& steps, const std::vector<double>& weights) {
    double r = 0;
    for (std::size_t j = 0; j < steps.size(); ++j) r += weights[j] * theta(steps[j]);
    return r;
  }
  SumUpdatePlan last;

 private:
  int rebuild_every_;
  SumState state_;
  double v_ = 0;
  std::map<std::int64_t, double> theta_;
  std::mt19937_64 rng_{42};
};

std::vector<std::int64_t> window(std::int64_t newest, std::size_t n, std::int64_t spacing) {
  std::vector<std::int64_t> s;
  for (std::int64_t step = newest - spacing * std::int64_t(n - 1); step <= newest; step += spacing)
    if (step > 0) s.push_back(step);
  return s;
}

struct Case {
  const char* spec;
  std::size_t checkpoints;
};

TEST(RunningSumPlan, SlidingWindowEqualsDirectWeightedSum) {
  for (const Case c : {Case{"linear", 5}, Case{"ema:alpha=0.3", 5}, Case{"ema:alpha=0.05", 9}}) {
    const MergeSpec spec = parse_merge_spec(c.spec);
    const bool ema = spec.ema() != nullptr;
    ScalarSum sum(64);
    int rebuilds = 0, incremental = 0;
    for (std::int64_t newest = 100; newest <= 20000; newest += 100) {
      const auto steps = window(newest, c.checkpoints, 100);
      if (ema && steps.size() < 2) continue;
      const auto w = ema ? ema_weights(spec.ema()->alpha, steps.size()) : uniform_weights(steps.size());
      // The job's context holds the checkpoint that just left the window (EmissionJob::context).
      const double got = sum.update(spec, steps, w, window(newest, c.checkpoints + 1, 100));
      ASSERT_NEAR(got, sum.reference(steps, w), 1e-12) << c.spec << " at step " << newest;
      (sum.last.rebuild ? rebuilds : incremental)++;
      if (!sum.last.rebuild) {
        EXPECT_LE(sum.last.reads(), ema ? 3u : 2u) << c.spec << " at step " << newest;
        EXPECT_EQ(sum.last.add, std::vector<std::int64_t>{newest});
      }
    }
    // The first update, then one rebuild per 64 incremental ones (a growing window also rebuilds
    // while adding one checkpoint reads as much as rebuilding a tail of two or fewer).
    EXPECT_GE(incremental, 190) << c.spec;
    EXPECT_LE(rebuilds, 8) << c.spec;
    EXPECT_GE(rebuilds, 4) << c.spec;
  }
}

TEST(RunningSumPlan, SkippedUpdatesSubtractWhatLeftWhileStillReadable) {
  const MergeSpec spec = parse_merge_spec("linear");
  ScalarSum sum(1000);
  const auto first = window(1000, 10, 100);
  sum.update(spec, first, uniform_weights(10), first);
  // Three checkpoints later: three left the tail; the window's context still holds them.
  const auto steps = window(1300, 10, 100);
  const auto readable = window(1300, 13, 100);
  const double got = sum.update(spec, steps, uniform_weights(10), readable);
  EXPECT_NEAR(got, sum.reference(steps, uniform_weights(10)), 1e-12);
  EXPECT_FALSE(sum.last.rebuild);
  ASSERT_EQ(sum.last.remove.size(), 3u);
  EXPECT_EQ(sum.last.remove[0].step, 100);
  EXPECT_EQ(sum.last.remove[0].coefficient, 1.0);
  EXPECT_EQ(sum.last.add, (std::vector<std::int64_t>{1100, 1200, 1300}));

  // Two more, but the leaving ones are gone from the window: only a rebuild is right.
  const auto later = window(1500, 10, 100);
  EXPECT_NEAR(sum.update(spec, later, uniform_weights(10), later), sum.reference(later, uniform_weights(10)), 1e-12);
  EXPECT_TRUE(sum.last.rebuild);
  EXPECT_EQ(sum.last.add, later);
  EXPECT_TRUE(sum.last.remove.empty());
}

TEST(RunningSumPlan, EmaRemovalsCarryTheirGeometricWeight) {
  const MergeSpec spec = parse_merge_spec("ema:alpha=0.25");
  ScalarSum sum(1000);
  const auto first = window(800, 8, 100);  // tail: 200..800 (7 steps), 100 weighted apart
  sum.update(spec, first, ema_weights(0.25, 8), first);
  const auto steps = window(1000, 8, 100);
  const double got = sum.update(spec, steps, ema_weights(0.25, 8), window(1000, 10, 100));
  EXPECT_NEAR(got, sum.reference(steps, ema_weights(0.25, 8)), 1e-12);
  ASSERT_FALSE(sum.last.rebuild);
  ASSERT_EQ(sum.last.remove.size(), 2u);  // 200 and 300 leave a 7-step tail: 0.75^6, 0.75^5
  EXPECT_DOUBLE_EQ(sum.last.remove[0].coefficient, std::pow(0.75, 6));
  EXPECT_DOUBLE_EQ(sum.last.remove[1].coefficient, std::pow(0.75, 5));
  ASSERT_TRUE(sum.last.anchor.has_value());
  EXPECT_EQ(sum.last.anchor->step, 300);
  EXPECT_DOUBLE_EQ(sum.last.anchor->coefficient, std::pow(0.75, 7));
  EXPECT_DOUBLE_EQ(sum.last.scale, 0.25);
}

TEST(RunningSumPlan, ModelChangeAndPeriodicRebuild) {
  ScalarSum sum(3);
  std::vector<bool> rebuilt;
  int since = 0;
  for (std::int64_t newest = 500; newest <= 1200; newest += 100) {
    const auto steps = window(newest, 5, 100);
    const MergeSpec spec = parse_merge_spec(newest < 1000 ? "ema:alpha=0.2" : "ema:alpha=0.4");
    const auto w = ema_weights(spec.ema()->alpha, 5);
    EXPECT_NEAR(sum.update(spec, steps, w, steps), sum.reference(steps, w), 1e-12) << newest;
    rebuilt.push_back(sum.last.rebuild);
    since = sum.last.rebuild ? 0 : since + 1;
    EXPECT_EQ(sum.last.next.updates_since_rebuild, since) << newest;
  }
  // 500: first; 600..800: three incremental; 900: the 4th (rebuild_every = 3); 1000: new alpha.
  EXPECT_EQ(rebuilt, (std::vector<bool>{true, false, false, false, true, true, false, false}));
}

TEST(RunningSumPlan, RefusesAnEmptySelection) {
  EXPECT_THROW(plan_sum_update({}, SumModel{}, {}, {}, {}, 64), Error);
  const std::vector<std::int64_t> one = {100};
  const std::vector<double> w = {1.0};
  EXPECT_THROW(plan_sum_update({}, SumModel{0.5, true}, one, w, one, 64), Error);
}

}  // namespace
}  // namespace wsm::merger
