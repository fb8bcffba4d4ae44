// The WSM duality against docs/method-guide.md: its formulas recomputed here in plain double loops, its
// worked-example table, and the properties every merge weight vector must have.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <numeric>
#include <vector>

#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"

namespace wsm {
namespace {

constexpr double kPi = std::numbers::pi;

// docs/method-guide.md's shapes, written out independently of decay.cpp.
double ref_f(DecayShape s, double t) {
  switch (s) {
    case DecayShape::linear: return 1 - t;
    case DecayShape::cosine: return (1 + std::cos(kPi * t)) / 2;
    case DecayShape::one_minus_sqrt: return 1 - std::sqrt(t);
    case DecayShape::exponential: return 1 - std::pow(0.1, 1 - t);
    default: return NAN;
  }
}

// c_j from w_i with the inverse formula, as a double loop over the definition w_i = sum_{j>=i} c_j
// solved from the newest checkpoint backwards.
std::vector<double> ref_weights(const std::vector<double>& w) {
  const std::size_t k = w.size();
  std::vector<double> c(k + 1, 0.0);
  for (std::size_t j = k; j >= 1; --j) {
    double later = 0;
    for (std::size_t m = j + 1; m <= k; ++m) later += c[m];
    c[j] = w[j - 1] - later;
  }
  double rest = 0;
  for (std::size_t m = 1; m <= k; ++m) rest += c[m];
  c[0] = 1 - rest;
  return c;
}

std::vector<double> sampled(DecayShape s, int count, double floor) {
  const int k = count - 1;
  std::vector<double> w;
  for (int i = 1; i <= k; ++i) w.push_back(floor + (1 - floor) * ref_f(s, double(i) / (k + 1)));
  return w;
}

MergeSpec shape_spec(DecayShape s, double floor = 0.0) { return ShapeRule{s, floor}; }

double sum(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

const DecayShape kAllShapes[] = {DecayShape::linear,       DecayShape::cosine, DecayShape::one_minus_sqrt,
                                 DecayShape::inverse_sqrt, DecayShape::exponential, DecayShape::wma};

TEST(Decay, WorkedExampleTableK4) {
  // docs/method-guide.md, k = 4, sampling w_i = f(i/5), four decimals.
  const std::vector<std::pair<DecayShape, std::vector<double>>> table = {
      {DecayShape::linear, {0.2000, 0.2000, 0.2000, 0.2000, 0.2000}},
      {DecayShape::cosine, {0.0955, 0.2500, 0.3090, 0.2500, 0.0955}},
      {DecayShape::one_minus_sqrt, {0.4472, 0.1852, 0.1421, 0.1198, 0.1056}},
  };
  for (const auto& [shape, expected] : table) {
    const auto c = merge_weights(shape_spec(shape), 5);
    ASSERT_EQ(c.size(), 5u) << decay_shape_name(shape);
    for (std::size_t j = 0; j < 5; ++j) EXPECT_NEAR(c[j], expected[j], 5e-5) << decay_shape_name(shape) << " c_" << j;
  }
}

TEST(Decay, MatchesDoubleLoopReferenceForContinuousShapes) {
  for (DecayShape s : {DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt, DecayShape::exponential})
    for (int count : {1, 2, 3, 5, 8, 17, 64})
      for (double floor : {0.0, 0.1, 0.5}) {
        const auto c = merge_weights(shape_spec(s, floor), count);
        const auto ref = ref_weights(sampled(s, count, floor));
        ASSERT_EQ(c.size(), ref.size());
        for (std::size_t j = 0; j < c.size(); ++j)
          EXPECT_NEAR(c[j], ref[j], 1e-12) << decay_shape_name(s) << " count " << count << " floor " << floor;
      }
}

TEST(Decay, WeightsSumToOneAndAreNonNegative) {
  for (DecayShape s : kAllShapes)
    for (int count = 1; count <= 40; ++count)
      for (double floor : {0.0, 0.05, 0.3, 1.0}) {
        const auto c = merge_weights(shape_spec(s, floor), count);
        ASSERT_EQ(int(c.size()), count);
        EXPECT_NEAR(sum(c), 1.0, 1e-12) << decay_shape_name(s) << " " << count;
        for (double x : c) EXPECT_GE(x, 0.0) << decay_shape_name(s) << " " << count;
      }
}

TEST(Decay, RoundTripWeightsDecayWeights) {
  for (DecayShape s : kAllShapes)
    for (int count : {1, 2, 3, 9, 33}) {
      const auto c = merge_weights(shape_spec(s, 0.1), count);
      const auto w = merge_weights_to_decay(c);
      ASSERT_EQ(int(w.size()), count - 1);
      const auto c2 = decay_to_merge_weights(w);
      for (std::size_t j = 0; j < c.size(); ++j) EXPECT_NEAR(c2[j], c[j], 1e-13);
    }
  // And w -> c -> w for an arbitrary non-increasing table.
  const std::vector<double> w = {0.97, 0.6, 0.6, 0.31, 0.02, 0.0};
  const auto w2 = merge_weights_to_decay(decay_to_merge_weights(w));
  for (std::size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(w2[i], w[i], 1e-15);
}

TEST(Decay, TailSumsAreTheDefinition) {
  const std::vector<double> c = {0.1, 0.2, 0.3, 0.15, 0.25};
  const auto w = merge_weights_to_decay(c);
  ASSERT_EQ(w.size(), 4u);
  for (std::size_t i = 1; i <= 4; ++i) {
    double tail = 0;
    for (std::size_t j = i; j <= 4; ++j) tail += c[j];
    EXPECT_DOUBLE_EQ(w[i - 1], tail);
  }
}

TEST(Decay, LinearIsTheUniformMean) {
  for (int count = 1; count <= 50; ++count)
    for (double c : merge_weights(shape_spec(DecayShape::linear), count)) EXPECT_NEAR(c, 1.0 / count, 1e-14);
}

TEST(Decay, FloorMixesInTheNewestCheckpoint) {
  // w' = r + (1-r) w  <=>  c' = (1-r) c + r e_k
  for (DecayShape s : kAllShapes) {
    if (s == DecayShape::inverse_sqrt) continue;  // the floor is this shape's end value instead
    for (double r : {0.1, 0.25}) {
      const auto c0 = merge_weights(shape_spec(s), 7);
      const auto cr = merge_weights(shape_spec(s, r), 7);
      for (std::size_t j = 0; j < 7; ++j)
        EXPECT_NEAR(cr[j], (1 - r) * c0[j] + (j == 6 ? r : 0.0), 1e-13) << decay_shape_name(s);
      for (double w : merge_weights_to_decay(cr)) EXPECT_GE(w, r - 1e-13);
    }
  }
  // floor = 1: no decay at all, the merge is the newest checkpoint.
  const auto c1 = merge_weights(shape_spec(DecayShape::cosine, 1.0), 4);
  EXPECT_NEAR(c1[3], 1.0, 1e-15);
  EXPECT_NEAR(c1[0] + c1[1] + c1[2], 0.0, 1e-15);
  EXPECT_THROW(merge_weights(shape_spec(DecayShape::cosine, 1.5), 4), Error);
  EXPECT_THROW(merge_weights(shape_spec(DecayShape::cosine, -0.1), 4), Error);
}

TEST(Decay, EdgesCountOneAndTwo) {
  for (DecayShape s : kAllShapes) {
    auto c = merge_weights(shape_spec(s), 1);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_DOUBLE_EQ(c[0], 1.0);
    EXPECT_TRUE(merge_weights_to_decay(c).empty());
  }
  // k = 1: w_1 = f(1/2), c = {1 - f(1/2), f(1/2)}
  for (DecayShape s : {DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt, DecayShape::exponential}) {
    const auto c = merge_weights(shape_spec(s), 2);
    ASSERT_EQ(c.size(), 2u);
    EXPECT_NEAR(c[1], ref_f(s, 0.5), 1e-15) << decay_shape_name(s);
    EXPECT_NEAR(c[0], 1 - ref_f(s, 0.5), 1e-15) << decay_shape_name(s);
  }
  // k = 2: w = {f(1/3), f(2/3)}
  const auto c = merge_weights(shape_spec(DecayShape::one_minus_sqrt), 3);
  EXPECT_NEAR(c[2], 1 - std::sqrt(2.0 / 3), 1e-15);
  EXPECT_NEAR(c[1], std::sqrt(2.0 / 3) - std::sqrt(1.0 / 3), 1e-15);
  EXPECT_NEAR(c[0], std::sqrt(1.0 / 3), 1e-15);
  EXPECT_THROW(merge_weights(shape_spec(DecayShape::linear), 0), Error);
  EXPECT_THROW(merge_weights(shape_spec(DecayShape::linear), -3), Error);
}

TEST(Decay, InverseSqrtEndsAtTheFloor) {
  for (double r : {0.0, 0.05, 0.1, 0.5}) {
    const double end = r > 0 ? r : 0.1;  // docs/schedules.md: default 0.1
    EXPECT_NEAR(decay_value(DecayShape::inverse_sqrt, 1.0, r), end, 1e-15);
    EXPECT_NEAR(decay_value(DecayShape::inverse_sqrt, 0.0, r), 1.0, 1e-15);
    const double a = 1 / (end * end) - 1;
    for (double t : {0.1, 0.37, 0.8}) EXPECT_NEAR(decay_value(DecayShape::inverse_sqrt, t, r), 1 / std::sqrt(1 + a * t), 1e-15);
  }
  // Not the same shape as 1-sqrt.
  EXPECT_GT(std::fabs(decay_value(DecayShape::inverse_sqrt, 0.5) - decay_value(DecayShape::one_minus_sqrt, 0.5)), 0.1);
  // Its merge weights sample that curve: w_i = 1/sqrt(1 + 99 i/(k+1)) with the default floor.
  const auto w = merge_weights_to_decay(merge_weights(shape_spec(DecayShape::inverse_sqrt), 6));
  for (int i = 1; i <= 5; ++i) EXPECT_NEAR(w[i - 1], 1 / std::sqrt(1 + 99.0 * i / 6), 1e-13);
}

TEST(Decay, ShapesStartAtOneAndEndAtTheFloor) {
  for (DecayShape s : {DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt}) {
    EXPECT_DOUBLE_EQ(decay_value(s, 0.0), 1.0);
    EXPECT_NEAR(decay_value(s, 1.0), 0.0, 1e-15);
    EXPECT_NEAR(decay_value(s, 1.0, 0.2), 0.2, 1e-15);
  }
  // The paper's EMA curve starts at 0.9 (docs/schedules.md), so its oldest checkpoint keeps c_0 >= 0.1.
  EXPECT_NEAR(decay_value(DecayShape::exponential, 0.0), 0.9, 1e-15);
  EXPECT_NEAR(decay_value(DecayShape::exponential, 1.0), 0.0, 1e-15);
  for (int count : {2, 5, 20}) EXPECT_GE(merge_weights(shape_spec(DecayShape::exponential), count)[0], 0.1 - 1e-15);
}

TEST(Decay, WmaIsProportionalToIndexPlusOne) {
  for (int count : {1, 2, 5, 12}) {
    const auto c = merge_weights(shape_spec(DecayShape::wma), count);
    const double norm = count * (count + 1) / 2.0;
    for (int j = 0; j < count; ++j) EXPECT_NEAR(c[j], (j + 1) / norm, 1e-15);
    for (int j = 1; j < count; ++j) EXPECT_NEAR(c[j] / c[0], j + 1.0, 1e-12);
  }
}

TEST(Decay, PmaEmaWithAlpha) {
  // theta_avg <- alpha theta_j + (1 - alpha) theta_avg, started from theta_0: run it on scalars.
  for (double alpha : {0.2, 0.5, 1.0})
    for (int count : {1, 2, 6}) {
      const MergeSpec spec = EmaRule{alpha};
      const auto c = merge_weights(spec, count);
      for (int probe = 0; probe < count; ++probe) {  // the weight of checkpoint `probe` = result on e_probe
        double avg = probe == 0 ? 1.0 : 0.0;
        for (int j = 1; j < count; ++j) avg = alpha * (j == probe ? 1.0 : 0.0) + (1 - alpha) * avg;
        EXPECT_NEAR(c[probe], avg, 1e-15) << "alpha " << alpha << " count " << count;
      }
    }
  EXPECT_THROW(merge_weights(EmaRule{1.3}, 3), Error);
  EXPECT_THROW(merge_weights(EmaRule{0.0}, 3), Error);
}

TEST(Decay, NonMonotoneDecayIsRejectedUnlessAllowed) {
  const std::vector<double> w = {0.9, 0.3, 0.6};
  try {
    decay_to_merge_weights(w);
    FAIL() << "expected wsm::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-increasing"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("w_3"), std::string::npos) << e.what();
  }
  const auto c = decay_to_merge_weights(w, true);
  EXPECT_NEAR(c[2], -0.3, 1e-15);  // c_2 = w_2 - w_3
  EXPECT_NEAR(sum(c), 1.0, 1e-15);
  EXPECT_THROW(decay_to_merge_weights(std::vector<double>{1.2, 0.5}), Error);   // above 1
  EXPECT_THROW(decay_to_merge_weights(std::vector<double>{0.5, -0.1}), Error);  // below 0
  EXPECT_THROW(decay_to_merge_weights(std::vector<double>{0.5, NAN}, true), Error);

  TableRule table{TableRule::Kind::decay, w};
  EXPECT_THROW(merge_weights(table, 4), Error);
  table.allow_non_monotone = true;
  EXPECT_NEAR(merge_weights(table, 4)[2], -0.3, 1e-15);
}

TEST(Decay, UserTables) {
  const MergeSpec decay = TableRule{TableRule::Kind::decay, {1.0, 0.5, 0.25}};
  const auto c = merge_weights(decay, 4);
  const std::vector<double> expected = {0.0, 0.5, 0.25, 0.25};
  for (std::size_t j = 0; j < 4; ++j) EXPECT_NEAR(c[j], expected[j], 1e-15);
  EXPECT_THROW(merge_weights(decay, 3), Error);  // table length and count disagree

  TableRule weights{TableRule::Kind::merge_weights, {1, 2, 7}};  // normalised
  const auto c2 = merge_weights(weights, 3);
  EXPECT_NEAR(c2[0], 0.1, 1e-15);
  EXPECT_NEAR(c2[2], 0.7, 1e-15);
  EXPECT_THROW(merge_weights(weights, 4), Error);
  weights.values = {0.5, -0.1, 0.6};
  EXPECT_THROW(merge_weights(weights, 3), Error);
  weights.values = {0.0, 0.0};
  EXPECT_THROW(merge_weights(weights, 2), Error);
}

TEST(Decay, ShapeNamesRoundTrip) {
  for (DecayShape s : kAllShapes) EXPECT_EQ(parse_decay_shape(decay_shape_name(s)), s);
  EXPECT_EQ(parse_decay_shape("ema"), DecayShape::exponential);
  EXPECT_FALSE(parse_decay_shape("triangle"));
}

}  // namespace
}  // namespace wsm
