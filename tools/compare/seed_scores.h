#pragma once
// Scores by seed, the unit a study compares in: the final score of one method per seed, paired
// differences per seed (seed-to-seed spread cancels), and how a summary reads in a report.
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "tools/compare/results.h"
#include "tools/compare/scoring.h"
#include "tools/compare/stats.h"

namespace wsm::tools::compare {

using SeedScores = std::map<std::uint64_t, double>;

bool better(double a, double b, ScoreOrder order);

// Final scores of one method by seed, for (shape, window); raw ignores shape and window. Rows of
// the granularity ablation (interval != 0) are selected only by `interval` = theirs.
SeedScores finals(const std::vector<ScoredModel>& rows, Method method, const std::string& shape, std::int64_t window,
                  std::int64_t interval = 0);

// The seeds every map holds, in order.
std::vector<std::uint64_t> common_seeds(std::initializer_list<const SeedScores*> maps);

Summary summary_of(const SeedScores& by_seed, const std::vector<std::uint64_t>& seeds);
Summary paired(const SeedScores& a, const SeedScores& b, const std::vector<std::uint64_t>& seeds);  // a - b

std::string mean_sd(const Summary& s);   // "1.8882 ± 0.0160"
std::string interval(const Summary& s);  // "+0.0046 [-0.0096, +0.0188]"

// How a paired difference WSM - WSD reads in words: "beats WSD", "is worse than WSD", "matches WSD"
// (the 95% interval holds 0); with one seed, better or worse in words and "one seed, no interval".
std::string judgement(const Summary& d, ScoreOrder order);

}  // namespace wsm::tools::compare
