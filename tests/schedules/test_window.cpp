// select_window: which checkpoints a window of steps (or tokens) covers, and their weights, for
// evenly and unevenly spaced checkpoints (docs/schedules.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <numeric>
#include <vector>

#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"

namespace wsm {
namespace {

MergeSpec spec_of(DecayShape s, double floor = 0.0) { return ShapeRule{s, floor}; }

TEST(Window, EvenSpacingReducesToThePaperRule) {
  std::vector<std::int64_t> positions;
  for (std::int64_t p = 1000; p <= 20000; p += 1000) positions.push_back(p);
  for (DecayShape s : {DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt, DecayShape::inverse_sqrt,
                       DecayShape::exponential, DecayShape::wma})
    for (int count : {1, 2, 5, 8}) {
      const auto sel = select_window(spec_of(s), positions, std::int64_t(count) * 1000);
      ASSERT_EQ(int(sel.indices.size()), count);
      EXPECT_EQ(sel.indices.back(), positions.size() - 1);
      EXPECT_EQ(sel.indices.front(), positions.size() - count);
      const auto expected = merge_weights(spec_of(s), count);
      for (int j = 0; j < count; ++j) EXPECT_NEAR(sel.weights[j], expected[j], 1e-14) << decay_shape_name(s);
      ASSERT_EQ(int(sel.decay.size()), count - 1);
    }
}

TEST(Window, WindowIsOpenAtTheOldEnd) {
  const std::vector<std::int64_t> positions = {100, 200, 300, 400};
  // (400 - 300, 400] excludes 100 and includes 200.
  auto sel = select_window(spec_of(DecayShape::linear), positions, 300);
  EXPECT_EQ(sel.indices, (std::vector<std::size_t>{1, 2, 3}));
  sel = select_window(spec_of(DecayShape::linear), positions, 301);
  EXPECT_EQ(sel.indices, (std::vector<std::size_t>{0, 1, 2, 3}));
  sel = select_window(spec_of(DecayShape::linear), positions, 1);  // only the newest: merge = newest
  EXPECT_EQ(sel.indices, (std::vector<std::size_t>{3}));
  EXPECT_EQ(sel.weights, (std::vector<double>{1.0}));
}

TEST(Window, UnevenSpacingSamplesAtPositions) {
  // Checkpoints with irregular gaps (e.g. saves on preemption); window of 1000 steps.
  const std::vector<std::int64_t> positions = {0, 450, 700, 900, 950, 1300, 1450};
  const std::int64_t window = 1000;
  for (DecayShape s : {DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt}) {
    const auto sel = select_window(spec_of(s, 0.05), positions, window);
    EXPECT_EQ(sel.indices, (std::vector<std::size_t>{2, 3, 4, 5, 6}));  // (450, 1450]: 450 is out
    // Independent: w_i = r + (1-r) f((p_i - p_0)/window), then c from the inverse formula.
    const std::int64_t p0 = positions[sel.indices[0]];
    std::vector<double> w;
    for (std::size_t i = 1; i < sel.indices.size(); ++i) {
      const double t = double(positions[sel.indices[i]] - p0) / window;
      const double f = s == DecayShape::linear ? 1 - t
                       : s == DecayShape::cosine ? (1 + std::cos(std::numbers::pi * t)) / 2
                                                 : 1 - std::sqrt(t);
      w.push_back(0.05 + 0.95 * f);
    }
    ASSERT_EQ(sel.decay.size(), w.size());
    for (std::size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(sel.decay[i], w[i], 1e-14);
    EXPECT_NEAR(sel.weights[0], 1 - w[0], 1e-14);
    EXPECT_NEAR(sel.weights.back(), w.back(), 1e-14);
    EXPECT_NEAR(std::accumulate(sel.weights.begin(), sel.weights.end(), 0.0), 1.0, 1e-14);
    for (double c : sel.weights) EXPECT_GE(c, 0.0);
  }
}

TEST(Window, IndexedSpecsUseTheSelectedCount) {
  const std::vector<std::int64_t> positions = {10, 20, 35, 70, 71};
  const auto sel = select_window(spec_of(DecayShape::wma), positions, 61);  // (10, 71]: 4 checkpoints
  ASSERT_EQ(sel.indices.size(), 4u);
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(sel.weights[j], (j + 1) / 10.0, 1e-15);
  const MergeSpec table = TableRule{TableRule::Kind::merge_weights, {1, 1, 2}};
  const auto t = select_window(table, positions, 40);  // (31, 71]: 35, 70, 71
  EXPECT_NEAR(t.weights[2], 0.5, 1e-15);
  EXPECT_THROW(select_window(table, positions, 100), Error);  // 5 selected, table of 3
}

TEST(Window, Validation) {
  const std::vector<std::int64_t> ok = {1, 2, 3};
  EXPECT_THROW(select_window(spec_of(DecayShape::linear), ok, 0), Error);
  EXPECT_THROW(select_window(spec_of(DecayShape::linear), ok, -5), Error);
  EXPECT_THROW(select_window(spec_of(DecayShape::linear), std::vector<std::int64_t>{}, 10), Error);
  EXPECT_THROW(select_window(spec_of(DecayShape::linear), std::vector<std::int64_t>{1, 3, 3}, 10), Error);
  EXPECT_THROW(select_window(spec_of(DecayShape::linear), std::vector<std::int64_t>{5, 3}, 10), Error);
  // Huge windows and positions do not overflow.
  const std::vector<std::int64_t> big = {INT64_MIN + 1, 0, INT64_MAX};
  auto sel = select_window(spec_of(DecayShape::linear), big, INT64_MAX);  // (0, MAX]
  EXPECT_EQ(sel.indices, (std::vector<std::size_t>{2}));
  const std::vector<std::int64_t> negative = {INT64_MIN + 1, -10, -5};
  sel = select_window(spec_of(DecayShape::linear), negative, INT64_MAX);  // newest - window underflows
  EXPECT_EQ(sel.indices, (std::vector<std::size_t>{0, 1, 2}));
  for (double c : sel.weights) EXPECT_GE(c, 0.0);
}

}  // namespace
}  // namespace wsm
