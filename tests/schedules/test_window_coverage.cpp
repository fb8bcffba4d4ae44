// The coverage rule `wsm merge` warns by (window_covered, docs/schedules.md): a window is covered
// when a checkpoint lies at or before its start, or the oldest checkpoint lies within one interval
// after it. Checked on evenly and unevenly spaced histories against the rule written out here, and
// on the cases of issue 24 (the first window of a run without a step-0 checkpoint; the window longer
// than the history that silently reshaped linear weights to 0.25/0.25/0.5).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "wsm/schedules/decay.h"
#include "wsm/schedules/window.h"

namespace wsm {
namespace {

// The rule, written out directly: is there room inside (newest - window, oldest) for one more
// checkpoint at the oldest gap? Covered when there is not.
bool reference_covered(const std::vector<std::int64_t>& p, std::int64_t window) {
  const std::int64_t start = p.back() - window;
  if (p.front() <= start) return true;
  if (p.size() < 2) return false;
  const std::int64_t next_older = p[0] - (p[1] - p[0]);
  return next_older <= start;
}

TEST(WindowCoverage, FirstWindowOfARunWithoutAStepZeroCheckpointIsCovered) {
  // Checkpoints every 100 steps from 100 to 800, window 800: (0, 800] holds all 8, evenly spaced,
  // and the shape is sampled at i/8, exactly as with a checkpoint at 0 (which lies outside anyway).
  std::vector<std::int64_t> p;
  for (std::int64_t s = 100; s <= 800; s += 100) p.push_back(s);
  EXPECT_TRUE(window_covered(p, 800));
  const auto sel = select_window(parse_merge_spec("linear"), p, 800);
  ASSERT_EQ(sel.weights.size(), 8u);
  for (double c : sel.weights) EXPECT_NEAR(c, 1.0 / 8, 1e-15);
  EXPECT_FALSE(window_covered(p, 900));  // one checkpoint (at 0) would be missing
}

TEST(WindowCoverage, AWindowLongerThanTheHistoryIsNotCovered) {
  const std::vector<std::int64_t> p = {100, 200, 300};
  EXPECT_FALSE(window_covered(p, 400));
  // What an uncovered window does to the weights (why `wsm merge` warns): linear sampled over 400
  // steps from 100: w = f(1/4), f(2/4) = 0.75, 0.5 -> c = 0.25, 0.25, 0.5 instead of thirds.
  const auto sel = select_window(parse_merge_spec("linear"), p, 400);
  ASSERT_EQ(sel.weights.size(), 3u);
  EXPECT_NEAR(sel.weights[0], 0.25, 1e-15);
  EXPECT_NEAR(sel.weights[1], 0.25, 1e-15);
  EXPECT_NEAR(sel.weights[2], 0.5, 1e-15);
  EXPECT_TRUE(window_covered(p, 300));
  EXPECT_TRUE(window_covered(p, 200));
}

TEST(WindowCoverage, MatchesTheRuleOnManyHistories) {
  for (std::int64_t first = 0; first <= 250; first += 50)
    for (std::int64_t gap : {7, 50, 100})
      for (int n = 1; n <= 6; ++n) {
        std::vector<std::int64_t> p;
        for (int i = 0; i < n; ++i) p.push_back(first + i * gap + (i == n - 1 ? 3 : 0));  // last one uneven
        for (std::int64_t window = 1; window <= 700; window += 13)
          EXPECT_EQ(window_covered(p, window), reference_covered(p, window))
              << "first " << first << " gap " << gap << " n " << n << " window " << window;
      }
}

TEST(WindowCoverage, EmptyHistoryOrNonPositiveWindowIsNotCovered) {
  EXPECT_FALSE(window_covered({}, 100));
  const std::vector<std::int64_t> one = {500};
  EXPECT_FALSE(window_covered(one, 100));
  EXPECT_FALSE(window_covered(one, 0));
  const std::vector<std::int64_t> huge = {-9'000'000'000'000'000'000LL, 9'000'000'000'000'000'000LL};
  EXPECT_TRUE(window_covered(huge, 9'100'000'000'000'000'000LL));
}

}  // namespace
}  // namespace wsm
