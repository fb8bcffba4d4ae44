#include "tools/compare/seed_scores.h"

#include <fmt/format.h>

#include <algorithm>

namespace wsm::tools::compare {

bool better(double a, double b, ScoreOrder order) { return order == ScoreOrder::lower_is_better ? a < b : a > b; }

SeedScores finals(const std::vector<ScoredModel>& rows, Method method, const std::string& shape, std::int64_t window,
                  std::int64_t interval) {
  SeedScores by_seed;
  for (const auto& m : rows)
    if (m.method == method && m.final && m.score && m.seed && m.interval == interval &&
        (method == Method::raw || (m.shape == shape && m.window == window)))
      by_seed[*m.seed] = *m.score;
  return by_seed;
}

std::vector<std::uint64_t> common_seeds(std::initializer_list<const SeedScores*> maps) {
  std::vector<std::uint64_t> seeds;
  for (const auto& [seed, score] : **maps.begin())
    if (std::all_of(maps.begin(), maps.end(), [&](auto* m) { return m->contains(seed); })) seeds.push_back(seed);
  return seeds;
}

Summary summary_of(const SeedScores& by_seed, const std::vector<std::uint64_t>& seeds) {
  std::vector<double> v;
  for (auto s : seeds) v.push_back(by_seed.at(s));
  return summarize(v);
}

Summary paired(const SeedScores& a, const SeedScores& b, const std::vector<std::uint64_t>& seeds) {
  std::vector<double> v;
  for (auto s : seeds) v.push_back(a.at(s) - b.at(s));
  return summarize(v);
}

std::string mean_sd(const Summary& s) {
  if (s.n == 0) return "n/a";
  return s.n > 1 ? fmt::format("{:.4f} ± {:.4f}", s.mean, s.sd) : fmt::format("{:.4f}", s.mean);
}

std::string interval(const Summary& s) {
  if (s.n == 0) return "n/a";
  if (s.n < 2) return fmt::format("{:+.4f}", s.mean);
  return fmt::format("{:+.4f} [{:+.4f}, {:+.4f}]", s.mean, s.mean - s.half_ci, s.mean + s.half_ci);
}

std::string judgement(const Summary& d, ScoreOrder order) {
  const auto word = [&](bool lower) { return (order == ScoreOrder::lower_is_better) == lower ? "beats WSD" : "is worse than WSD"; };
  if (d.n < 2) {
    if (d.n == 0 || d.mean == 0) return "equals WSD (one seed, no interval)";
    return std::string(word(d.mean < 0)) + " (one seed, no interval)";
  }
  const double lo = d.mean - d.half_ci, hi = d.mean + d.half_ci;
  if (hi >= 0 && lo <= 0) return "matches WSD";
  return word(hi < 0);
}

}  // namespace wsm::tools::compare
