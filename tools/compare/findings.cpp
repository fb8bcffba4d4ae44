#include "tools/compare/findings.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "tools/compare/seed_scores.h"

namespace wsm::tools::compare {
namespace {

// The paper calls its exponential curve EMA; wsm's name for that shape is "exponential".
std::string paper_name(const std::string& shape) { return shape == "exponential" ? "exponential (EMA)" : shape; }

std::string signed_words(const Summary& d, ScoreOrder order, const char* better_text, const char* worse_text) {
  if (d.n == 0) return "n/a";
  const bool lower = d.mean < 0;
  const char* words = (order == ScoreOrder::lower_is_better) == lower ? better_text : worse_text;
  if (d.n < 2) return fmt::format("{} by {:+.4f} (one seed, no interval)", words, d.mean);
  const double lo = d.mean - d.half_ci, hi = d.mean + d.half_ci;
  if (lo <= 0 && hi >= 0) return fmt::format("no clear difference ({})", interval(d));
  return fmt::format("{} ({})", words, interval(d));
}

std::string shape_ranking(const std::vector<StudyCell>& cells, ScoreOrder order) {
  std::map<std::int64_t, std::vector<const StudyCell*>> by_duration;
  for (const auto& c : cells) by_duration[c.duration].push_back(&c);
  std::string md;
  for (auto& [d, list] : by_duration) {
    std::stable_sort(list.begin(), list.end(), [&](auto* a, auto* b) { return better(a->wsm.mean, b->wsm.mean, order); });
    std::vector<std::string> parts;
    for (auto* c : list) parts.push_back(fmt::format("{} {:.4f}", paper_name(c->shape), c->wsm.mean));
    const auto gap = list.size() > 1 ? list.back()->wsm.mean - list.front()->wsm.mean : 0.0;
    md += fmt::format("  - D = {}: {} (best to worst merge over W = D, mean loss; {:.4f} nats from first to last).\n", d,
                      fmt::join(parts, " > "), std::abs(gap));
  }
  return md;
}

std::string longer_durations(const std::vector<ScoredModel>& rows, const std::vector<StudyCell>& cells, ScoreOrder order) {
  std::set<std::int64_t> durations;
  std::vector<std::string> shapes;
  for (const auto& c : cells) {
    durations.insert(c.duration);
    if (std::find(shapes.begin(), shapes.end(), c.shape) == shapes.end()) shapes.push_back(c.shape);
  }
  if (durations.size() < 2) return "  - One duration only: nothing to compare.\n";
  const std::int64_t shortest = *durations.begin(), longest = *durations.rbegin();
  std::string md;
  for (const auto& shape : shapes) {
    const auto a = finals(rows, Method::wsm, shape, longest), b = finals(rows, Method::wsm, shape, shortest);
    const auto seeds = common_seeds({&a, &b});
    if (seeds.empty()) continue;
    md += fmt::format("  - {}: merging over {} steps instead of {}: {}.\n", paper_name(shape), longest, shortest,
                      signed_words(paired(a, b, seeds), order, "better", "worse"));
  }
  return md;
}

std::string diminishing_returns(const std::vector<GranularityCell>& g) {
  // Mean over shapes of WSM - WSD at each count, per duration: the gain of each doubling.
  std::map<std::int64_t, std::map<std::int64_t, std::vector<double>>> by;
  for (const auto& c : g) by[c.duration][c.count].push_back(c.diff.mean);
  std::string md;
  for (const auto& [d, counts] : by) {
    std::vector<std::string> steps;
    double previous = 0;
    std::int64_t previous_count = 0;
    for (const auto& [count, diffs] : counts) {
      double mean = 0;
      for (double v : diffs) mean += v / double(diffs.size());
      if (previous_count) steps.push_back(fmt::format("{} -> {}: {:+.4f}", previous_count, count, mean - previous));
      previous = mean, previous_count = count;
    }
    md += fmt::format("  - D = {}: change of WSM - WSD (mean over shapes) per doubling of the checkpoints: {}.\n", d,
                      steps.empty() ? std::string("one count only") : fmt::format("{}", fmt::join(steps, "; ")));
  }
  return md;
}

}  // namespace

std::vector<PhaseEvidence> phase_evidence(const std::vector<ScoredModel>& rows, const std::vector<StudyCell>& cells,
                                          std::int64_t steps) {
  std::map<std::pair<std::uint64_t, std::int64_t>, double> raw;  // (seed, step) -> trunk loss
  for (const auto& m : rows)
    if (m.method == Method::raw && m.seed && m.step && m.score) raw[{*m.seed, *m.step}] = *m.score;
  std::set<std::int64_t> durations;
  for (const auto& c : cells) durations.insert(c.duration);
  std::vector<PhaseEvidence> out;
  for (auto d : durations) {
    std::vector<double> falls;
    for (const auto& [key, score] : raw)
      if (key.second == steps && raw.contains({key.first, steps - d})) falls.push_back(raw.at({key.first, steps - d}) - score);
    if (falls.empty()) continue;
    double gain = 0;
    int n = 0;
    for (const auto& c : cells)
      if (c.duration == d && c.raw.n && c.wsd.n) gain += c.raw.mean - c.wsd.mean, ++n;
    PhaseEvidence e{d, summarize(falls), n ? gain / n : 0.0};
    e.phase = classify_phase(e.trunk_fall.mean, e.decay_gain);
    out.push_back(e);
  }
  return out;
}

std::vector<GranularityCell> summarize_granularity(const std::vector<ScoredModel>& rows) {
  std::vector<std::string> shapes;  // in the order first seen
  std::set<std::tuple<std::int64_t, std::size_t, std::int64_t>> keys;  // (D, shape index, -interval): by count
  for (const auto& m : rows) {
    if (m.method != Method::wsm || !m.interval || !m.final) continue;
    auto at = std::find(shapes.begin(), shapes.end(), m.shape);
    if (at == shapes.end()) at = shapes.insert(shapes.end(), m.shape);
    keys.emplace(m.window, std::size_t(at - shapes.begin()), -m.interval);
  }
  std::vector<GranularityCell> cells;
  for (const auto& [d, shape_index, minus_step] : keys) {
    const std::string& shape = shapes[shape_index];
    const std::int64_t step = -minus_step;
    const auto wsd = finals(rows, Method::wsd, shape, d), wsm = finals(rows, Method::wsm, shape, d, step);
    GranularityCell c{shape, d, d / step, step};
    c.seeds = common_seeds({&wsm, &wsd});
    if (c.seeds.empty()) continue;
    c.wsm = summary_of(wsm, c.seeds);
    c.diff = paired(wsm, wsd, c.seeds);
    cells.push_back(std::move(c));
  }
  return cells;
}

std::string granularity_markdown(const std::vector<GranularityCell>& cells, ScoreOrder order) {
  if (cells.empty()) return "";
  std::string md =
      "\n## Checkpoints per window\n\nThe merge over W = D of only g of the trunk's checkpoints, evenly spaced (every D/g "
      "steps, the newest at S), against the same WSD branch; paired per seed, 95% interval.\n\n"
      "| shape | D (steps) | checkpoints g | interval (steps) | seeds | WSM | WSM - WSD | reads |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& c : cells)
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", c.shape, c.duration, c.count, c.interval, c.seeds.size(),
                      mean_sd(c.wsm), interval(c.diff), judgement(c.diff, order));
  return md;
}

std::string paper_findings_markdown(const std::vector<ScoredModel>& rows, const std::vector<StudyCell>& cells,
                                    const std::vector<GranularityCell>& granularity, ScoreOrder order) {
  std::string md = "\n## The paper's findings, here\n\n";
  md += "- **Shape ranking.** The paper: 1-sqrt >= linear (mean) > EMA. Here:\n" + shape_ranking(cells, order);
  md += "- **Longer merge durations are better.** The paper: the duration a merge covers matters most, longer is "
        "better. Here, paired per seed:\n" + longer_durations(rows, cells, order);
  md += "- **More checkpoints per window help, with diminishing returns.** ";
  md += granularity.empty() ? std::string("Not measured (run with --granularity).\n")
                            : "Here (negative: the merge moves toward or past WSD):\n" + diminishing_returns(granularity);
  return md;
}

}  // namespace wsm::tools::compare
