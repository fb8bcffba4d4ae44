// split_work: every element of every tensor belongs to exactly one rank, each rank's bytes are
// within the alignment slack of an equal share, cuts inside a tensor are aligned, and uneven
// models (one huge tensor, many tiny ones, empty tensors, fewer elements than ranks) split too.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "merger/offline/work_split.h"

namespace wsm::merger {
namespace {

MergePlan plan_of(const std::vector<std::uint64_t>& numels) {
  MergePlan p;
  for (std::size_t i = 0; i < numels.size(); ++i) {
    p.output_tensors.push_back({"t" + std::to_string(i), DType::f32, {std::int64_t(numels[i])}});
    p.copied.push_back(false);
  }
  return p;
}

void check_split(const std::vector<std::uint64_t>& numels, const std::vector<std::uint64_t>& costs, int ranks) {
  SCOPED_TRACE("ranks " + std::to_string(ranks) + ", " + std::to_string(numels.size()) + " tensors");
  const MergePlan plan = plan_of(numels);
  const auto split = split_work(plan, costs, ranks);
  ASSERT_EQ(split.size(), std::size_t(ranks));
  // coverage: per tensor, the slices of ranks 0..N-1 tile [0, numel) in order, without overlap
  std::vector<std::uint64_t> next(numels.size(), 0);
  std::vector<double> rank_cost(std::size_t(ranks), 0);
  std::uint64_t max_cost = 0;
  double total = 0;
  for (std::size_t t = 0; t < numels.size(); ++t) {
    total += double(costs[t]) * double(numels[t]);
    max_cost = std::max(max_cost, costs[t]);
  }
  for (int r = 0; r < ranks; ++r) {
    std::size_t last = 0;
    for (const auto& s : split[std::size_t(r)]) {
      ASSERT_GT(s.count, 0u);
      ASSERT_EQ(s.begin, next[s.tensor]) << "tensor " << s.tensor << " has a hole or an overlap";
      EXPECT_GE(s.tensor, last);
      last = s.tensor;
      next[s.tensor] = s.begin + s.count;
      if (s.begin != 0) EXPECT_EQ(s.begin % kSliceAlignElements, 0u) << "cut inside a tensor not aligned";
      rank_cost[std::size_t(r)] += double(costs[s.tensor]) * double(s.count);
    }
  }
  for (std::size_t t = 0; t < numels.size(); ++t) EXPECT_EQ(next[t], numels[t]) << "tensor " << t << " not covered";
  // balance: a share boundary moves by at most half an aligned piece (or one whole small tensor)
  std::uint64_t max_small = 0;
  for (std::size_t t = 0; t < numels.size(); ++t)
    if (numels[t] <= kSliceAlignElements) max_small = std::max(max_small, numels[t] * costs[t]);
  const double slack = 2.0 * double(std::max<std::uint64_t>(kSliceAlignElements * max_cost, max_small));
  for (int r = 0; r < ranks; ++r) EXPECT_NEAR(rank_cost[std::size_t(r)], total / ranks, slack) << "rank " << r;
  EXPECT_EQ(split_work(plan, costs, ranks).size(), split.size());  // deterministic
}

TEST(WorkSplit, OneHugeTensorAndManyTinyOnes) {
  std::vector<std::uint64_t> numels = {50'000'000};
  for (int i = 0; i < 300; ++i) numels.push_back(std::uint64_t(i % 7 + 1));
  numels.push_back(0);  // empty: nobody's work
  numels.push_back(3'000'001);
  const std::vector<std::uint64_t> costs(numels.size(), 6);
  for (int ranks : {1, 2, 3, 7, 64}) check_split(numels, costs, ranks);
}

TEST(WorkSplit, ByBytesNotElements) {
  // equal element counts, tensor 1 costs 5x per element (f32 inputs vs bf16): rank 0 of 2 takes
  // all of tensor 0 and a third of tensor 1
  const std::vector<std::uint64_t> numels = {12'000'000, 12'000'000};
  const std::vector<std::uint64_t> costs = {2, 10};
  check_split(numels, costs, 2);
  const auto split = split_work(plan_of(numels), costs, 2);
  ASSERT_EQ(split[0].size(), 2u);
  EXPECT_NEAR(double(split[0][1].count), 12e6 * 0.4, double(kSliceAlignElements));
}

TEST(WorkSplit, FewerElementsThanRanks) {
  const std::vector<std::uint64_t> numels = {1, 2, 3};
  check_split(numels, {4, 4, 4}, 8);
  const auto split = split_work(plan_of(numels), std::vector<std::uint64_t>{4, 4, 4}, 8);
  std::size_t busy = 0;
  for (const auto& s : split) busy += !s.empty();
  EXPECT_GE(busy, 1u);
  EXPECT_LE(busy, 3u);  // a tiny tensor is never cut
}

TEST(WorkSplit, RandomModels) {
  std::mt19937_64 rng(15);
  for (int round = 0; round < 30; ++round) {
    std::vector<std::uint64_t> numels, costs;
    const int n = int(rng() % 40) + 1;
    for (int i = 0; i < n; ++i) {
      numels.push_back(rng() % 4 == 0 ? rng() % 20'000'000 : rng() % 5000);
      costs.push_back(rng() % 20 + 1);
    }
    check_split(numels, costs, int(rng() % 9) + 1);
  }
}

}  // namespace
}  // namespace wsm::merger
