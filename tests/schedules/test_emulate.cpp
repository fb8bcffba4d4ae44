// emulate_merge against a direct simulation: scalar "parameters" take one update per step, the
// merge is computed as sum_j c_j theta_{p_j}, and it must equal the run with LR lr(s) * factor(s).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "wsm/core/error.h"
#include "wsm/schedules/emulate.h"
#include "wsm/schedules/schedule.h"

namespace wsm {
namespace {

TEST(Emulate, MergeEqualsTheRunWithTheEmulatedLr) {
  const Schedule sched = parse_schedule("warmup=50,stable,peak=0.01");
  const std::int64_t steps = 1000;
  for (const char* text : {"linear", "1-sqrt", "cosine,floor=0.1", "inverse-sqrt", "exponential", "wma",
                           "ema:alpha=0.3"})
    for (std::int64_t window : {1, 100, 250, 999, 5000})
      for (std::int64_t interval : {1, 25, 60}) {
        const MergeSpec spec = parse_merge_spec(text);
        const auto em = emulate_merge(spec, steps, window, interval);
        // theta_t after t updates, gradient g(s) = sin(s) (any sequence works: the duality is linear).
        std::vector<double> theta(steps + 1, 0.0);
        for (std::int64_t s = 0; s < steps; ++s) theta[s + 1] = theta[s] - sched.lr_at(s) * std::sin(0.1 * s);
        double merged = 0;
        for (std::size_t j = 0; j < em.positions.size(); ++j) merged += em.weights[j] * theta[em.positions[j]];
        double emulated = 0;
        for (std::int64_t s = 0; s < steps; ++s) emulated -= sched.lr_at(s) * em.factor[s] * std::sin(0.1 * s);
        EXPECT_NEAR(merged, emulated, 1e-12) << text << " window " << window << " interval " << interval;
        // Checkpoints end at the last step and are `interval` apart.
        EXPECT_EQ(em.positions.back(), steps);
        for (std::size_t j = 1; j < em.positions.size(); ++j) EXPECT_EQ(em.positions[j] - em.positions[j - 1], interval);
        EXPECT_GT(em.positions.front(), steps - window);
      }
}

TEST(Emulate, EvenWindowGivesThePaperStaircase) {
  // window = (k+1) * interval: the updates between checkpoints i-1 and i keep w_i = f(i/(k+1)).
  const auto em = emulate_merge(parse_merge_spec("linear"), 100, 40, 10);
  ASSERT_EQ(em.positions, (std::vector<std::int64_t>{70, 80, 90, 100}));
  for (std::int64_t s = 0; s < 70; ++s) EXPECT_EQ(em.factor[s], 1.0);
  for (std::int64_t s = 70; s < 100; ++s) EXPECT_NEAR(em.factor[s], 1.0 - double((s - 70) / 10 + 1) / 4, 1e-15) << s;
}

TEST(Emulate, RejectsBadArguments) {
  const MergeSpec spec = parse_merge_spec("linear");
  EXPECT_THROW(emulate_merge(spec, 0, 10, 1), Error);
  EXPECT_THROW(emulate_merge(spec, 100, 0, 1), Error);
  EXPECT_THROW(emulate_merge(spec, 100, 10, 0), Error);
}

}  // namespace
}  // namespace wsm
