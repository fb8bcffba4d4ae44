#include "tools/compare/report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "wsm/formats/atomic_file.h"
#include "wsm/core/version.h"
#include "tools/compare/figures.h"
#include "tools/compare/findings.h"
#include "tools/compare/seed_scores.h"

namespace wsm::tools::compare {
namespace fs = std::filesystem;
using nlohmann::json;
namespace {

json summary_json(const Summary& s) {
  return {{"n", s.n}, {"mean", s.mean}, {"sd", s.sd}, {"ci95", s.n > 1 ? json::array({s.mean - s.half_ci, s.mean + s.half_ci}) : json(nullptr)}};
}

std::string study_markdown(const CompareReport& r, const std::vector<StudyCell>& cells) {
  const std::int64_t steps = r.config.value("steps", std::int64_t(0));
  std::string md;
  md += "## Question\n\nDoes merging the constant-LR trunk's checkpoints (WSM) reach the model that a real learning-rate "
        "decay (WSD: the same trunk branched at S - D and decayed to S) reaches, and which shape and merge window "
        "should be used? Scores are validation loss in nats (lower is better), by " + r.evaluator + ", at step " +
        std::to_string(steps) + ".\n\n";
  md += "## Results\n\nMean ± standard deviation over seeds; differences are paired per seed, with a 95% Student-t "
        "interval; \"matches\" means the interval holds 0. \"best W\" is the merge window W <= D with the lowest mean loss.\n\n";
  md += "| shape | D (steps) | seeds | raw trunk | WSD | WSM, W = D | WSM - WSD | best W | WSM(best W) - WSD |\n";
  md += "|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& c : cells)
    md += fmt::format("| {} | {} ({:.0f}%) | {} | {} | {} | {} | {} | {} | {} |\n", c.shape, c.duration,
                      100.0 * double(c.duration) / double(std::max<std::int64_t>(steps, 1)), c.seeds.size(),
                      mean_sd(c.raw), mean_sd(c.wsd), mean_sd(c.wsm), interval(c.diff), c.best_window,
                      interval(c.best_diff));
  md += "\n## Verdict\n\n";
  std::set<std::int64_t> durations;
  for (const auto& c : cells) durations.insert(c.duration);
  for (auto d : durations) {
    std::vector<std::string> parts;
    for (const auto& c : cells) {
      if (c.duration != d) continue;
      std::string part = fmt::format("{} {} ({})", c.shape, judgement(c.diff, r.order), interval(c.diff));
      if (c.best_window != d)
        part += fmt::format(", and over its best window W = {} {} ({})", c.best_window, judgement(c.best_diff, r.order),
                            interval(c.best_diff));
      parts.push_back(part);
    }
    md += fmt::format("- D = {} steps, merging the same window: {}.\n", d, fmt::join(parts, "; "));
  }
  const auto granularity = summarize_granularity(r.rows);
  md += granularity_markdown(granularity, r.order);
  md += "\n## Regime\n\n" + regime_markdown(r, cells) + "\n";
  md += paper_findings_markdown(r.rows, cells, granularity, r.order);
  return md;
}

std::string score_text(const ScoredModel& m) {
  return m.noise ? fmt::format("{:.6g} ± {:.2g}", *m.score, *m.noise) : fmt::format("{:.6g}", *m.score);
}

std::string ranking_markdown(const std::vector<const ScoredModel*>& ranked) {
  std::string md = "| rank | method | shape | floor | window (steps) | checkpoints | score | model |\n|---|---|---|---|---|---|---|---|\n";
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    const auto& m = *ranked[i];
    const bool merge = m.method == Method::wsm;
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", i + 1,
                      m.method == Method::baseline ? "baseline " + m.name : std::string(method_name(m.method)), m.shape,
                      merge ? fmt::format("{}", m.floor) : "", merge ? std::to_string(m.window) : "",
                      merge ? m.sources.size() : 1, score_text(m), m.path.filename().string());
  }
  return md;
}

std::string verdict_markdown(const CompareReport& r, const std::vector<const ScoredModel*>& ranked) {
  std::size_t failed = 0, merges = 0;
  for (const auto& m : r.rows) failed += !m.error.empty(), merges += m.method == Method::wsm;
  if (ranked.empty())
    return fmt::format("No model was scored: the evaluation failed for {} of {} models (see Errors), so nothing is "
                       "ranked and no model is named. Fix the eval command and run the same command again: what was "
                       "merged is kept.\n",
                       failed, r.rows.size());
  const auto best = std::find_if(ranked.begin(), ranked.end(), [](auto* m) { return m->method == Method::wsm; });
  if (best == ranked.end())
    return merges == 0 ? "No merge was made (no window holds two checkpoints), so no merge is named.\n"
                       : fmt::format("No merge was scored ({} of {} merges failed, see Errors), so no merge is named; "
                                     "the other models' scores are above.\n", merges, merges);
  std::string md = fmt::format("The best merge is the {} ({}).", model_words(**best), score_text(**best));
  const auto raw = std::find_if(ranked.begin(), ranked.end(), [](auto* m) { return m->method == Method::raw; });
  if (raw != ranked.end())
    md += fmt::format(" Against {}: {:+.6g}.", model_words(**raw), *(*best)->score - *(*raw)->score);
  if (ranked.front() != *best)
    md += fmt::format(" The best model overall is {} ({}), not a merge.", model_words(*ranked.front()), score_text(*ranked.front()));
  if (failed) md += fmt::format(" {} model(s) could not be scored and are not ranked (see Errors).", failed);
  return md + "\n";
}

std::string baselines_markdown(const std::vector<BaselineComparison>& comparisons, bool noise_given) {
  if (comparisons.empty()) return {};
  std::string md = "\n## Against the baselines\n\nEach merge's score minus each baseline's. ";
  md += noise_given ? "\"equal within noise\" means the difference is within 2 combined standard errors of the two scores "
                      "(the margin, from the evaluator's noise key).\n\n"
                    : "The evaluator reports no noise estimate (give --noise-key), so any difference counts: read small "
                      "ones with care.\n\n";
  md += "| merge | baseline | difference | margin | verdict |\n|---|---|---|---|---|\n";
  for (const auto& c : comparisons)
    md += fmt::format("| {} | {} | {:+.6g} | {} | {} |\n", model_words(*c.merge), c.baseline->name, c.difference,
                      c.margin ? fmt::format("±{:.2g}", *c.margin) : "n/a", c.verdict);
  md += "\n";
  std::set<std::string> names;
  for (const auto& c : comparisons) names.insert(c.baseline->name);
  for (const auto& name : names) {  // comparisons are ordered best merge first
    const auto c = std::find_if(comparisons.begin(), comparisons.end(), [&](const auto& x) { return x.baseline->name == name; });
    md += fmt::format("- Against '{}': the best merge, the {}, is {} ({:+.6g}).\n", name, model_words(*c->merge), c->verdict,
                      c->difference);
  }
  return md;
}

std::string sweep_markdown(const CompareReport& r, const std::vector<const ScoredModel*>& ranked) {
  std::string md = "## Question\n\nWhich merge of these constant-LR checkpoints scores best, by shape and window";
  bool baselines = false, noise = false;
  for (const auto& m : r.rows) baselines |= m.method == Method::baseline, noise |= m.noise.has_value();
  md += baselines ? ", and how does it compare with the baselines? " : "? ";
  md += "Scores by " + r.evaluator + (r.order == ScoreOrder::lower_is_better ? " (lower is better)" : " (higher is better)") +
        "; a model whose evaluation failed is not ranked.\n\n## Ranking\n\n" + ranking_markdown(ranked);
  md += "\n## Verdict\n\n" + verdict_markdown(r, ranked);
  md += baselines_markdown(baseline_comparisons(r.rows, r.order), noise);
  return md;
}

}  // namespace

std::string regime_markdown(const CompareReport& r, const std::vector<StudyCell>& cells) {
  const double tpp = r.regime.value("tokens_per_param", 0.0);
  std::string md = fmt::format("The trunk saw {:.3g} tokens for {:.3g} parameters ({:.2f} tokens per parameter).",
                               r.regime.value("tokens", 0.0), r.regime.value("params", 0.0), tpp);
  const auto phases = phase_evidence(r.rows, cells, r.config.value("steps", std::int64_t(0)));
  for (const auto& e : phases)
    md += fmt::format(" Over the last {} steps the trunk's loss still fell by {:.4f} nats while a WSD decay over them gained "
                      "{:.4f} (fall / gain {:.2f}: {}).",
                      e.duration, e.trunk_fall.mean, e.decay_gain,
                      e.decay_gain > 0 ? e.trunk_fall.mean / e.decay_gain : 0.0, phase_name(e.phase));
  // The shortest duration is the most local measure of whether the trunk still improves.
  if (!phases.empty())
    md += fmt::format(" {} (Phase from the shortest duration: early when the trunk's fall is at least {} of the decay's "
                      "gain, stable at most {}, transition between.)",
                      phase_sentence(phases.front().phase), kEarlyFallPerGain, kStableFallPerGain);
  return md;
}

std::vector<StudyCell> summarize_study(const std::vector<ScoredModel>& rows, ScoreOrder order) {
  // Cells by duration, then shapes in the order they were asked for (first seen).
  std::vector<std::pair<std::string, std::int64_t>> keys;
  std::set<std::int64_t> windows;
  for (const auto& m : rows) {
    if (m.method == Method::wsd && m.final && std::find(keys.begin(), keys.end(), std::pair(m.shape, m.window)) == keys.end())
      keys.emplace_back(m.shape, m.window);
    if (m.method == Method::wsm && !m.interval) windows.insert(m.window);
  }
  std::stable_sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  const auto raw = finals(rows, Method::raw, "", 0);
  std::vector<StudyCell> cells;
  for (const auto& [shape, d] : keys) {
    StudyCell c{shape, d};
    const auto wsd = finals(rows, Method::wsd, shape, d), wsm = finals(rows, Method::wsm, shape, d);
    c.seeds = common_seeds({&wsd, &wsm, &raw});
    if (c.seeds.empty()) continue;
    c.raw = summary_of(raw, c.seeds);
    c.wsd = summary_of(wsd, c.seeds);
    c.wsm = summary_of(wsm, c.seeds);
    c.diff = paired(wsm, wsd, c.seeds);
    c.best_window = d, c.best_wsm = c.wsm, c.best_diff = c.diff;
    for (auto w : windows) {
      const auto cand = finals(rows, Method::wsm, shape, w);
      if (w > d || common_seeds({&wsd, &cand}) != common_seeds({&wsd, &wsm})) continue;
      const Summary s = summary_of(cand, c.seeds);
      if (better(s.mean, c.best_wsm.mean, order)) c.best_window = w, c.best_wsm = s, c.best_diff = paired(cand, wsd, c.seeds);
    }
    cells.push_back(std::move(c));
  }
  return cells;
}

std::string model_words(const ScoredModel& m) {
  switch (m.method) {
    case Method::raw: return m.step ? fmt::format("the newest raw checkpoint (step {})", *m.step) : "the newest raw checkpoint";
    case Method::baseline: return "baseline '" + m.name + "'";
    case Method::wsd: return fmt::format("WSD {} decay over {} steps", m.shape, m.window);
    case Method::wsm: break;
  }
  return fmt::format("{}{} merge over {} steps ({} checkpoints)", m.shape, m.floor > 0 ? fmt::format(" floor {}", m.floor) : "",
                     m.window, m.sources.size());
}

BaselineComparison compare_with_baseline(const ScoredModel& merge, const ScoredModel& baseline, ScoreOrder order) {
  BaselineComparison c{&merge, &baseline, *merge.score - *baseline.score, std::nullopt, {}};
  if (merge.noise || baseline.noise)
    c.margin = 2.0 * std::hypot(merge.noise.value_or(0.0), baseline.noise.value_or(0.0));
  if (c.margin ? std::abs(c.difference) <= *c.margin : c.difference == 0)
    c.verdict = c.margin ? "equal within noise" : "equal";
  else
    c.verdict = better(*merge.score, *baseline.score, order) ? "better" : "worse";
  return c;
}

std::vector<BaselineComparison> baseline_comparisons(const std::vector<ScoredModel>& rows, ScoreOrder order) {
  std::vector<BaselineComparison> out;
  const auto ranked = rank_models(rows, order);
  for (const ScoredModel* m : ranked) {
    if (m->method != Method::wsm) continue;
    for (const ScoredModel* b : ranked)
      if (b->method == Method::baseline) out.push_back(compare_with_baseline(*m, *b, order));
  }
  return out;
}

std::vector<const ScoredModel*> rank_models(const std::vector<ScoredModel>& rows, ScoreOrder order) {
  std::vector<const ScoredModel*> ranked;
  for (const auto& m : rows)
    if (m.score && m.final && std::isfinite(*m.score)) ranked.push_back(&m);
  std::stable_sort(ranked.begin(), ranked.end(), [&](auto* a, auto* b) { return better(*a->score, *b->score, order); });
  return ranked;
}

namespace {

// " (this invocation); training ..." for a study's report: the runs' own wall times, whichever
// invocation ran them.
std::string training_text(const TrainingTime& t) {
  std::string text = " (this invocation; finished runs and scores are reused)";
  if (t.timed > 0) text += fmt::format("; training {:.0f} s, the sum of {} run(s)' own wall times", t.seconds, t.timed);
  if (t.timed < t.runs)
    text += fmt::format("; {} of {} run(s) finished before wsm recorded training time", t.runs - t.timed, t.runs);
  return text;
}

}  // namespace

std::string write_report(const CompareReport& r, const fs::path& dir) {
  fs::create_directories(dir);
  const bool study = r.mode == Mode::study;
  json results = json::array(), summary = json::array(), errors = json::array(), comparisons = json::array();
  json granularity = json::array(), phases = json::array();  // study only
  for (const auto& m : r.rows) {
    results.push_back(to_json(m));
    if (!m.error.empty()) errors.push_back(m.error);
  }
  std::string body;
  if (study) {
    const auto cells = summarize_study(r.rows, r.order);
    for (const auto& c : cells)
      summary.push_back({{"shape", c.shape}, {"duration", c.duration}, {"seeds", c.seeds}, {"raw", summary_json(c.raw)},
                         {"wsd", summary_json(c.wsd)}, {"wsm", summary_json(c.wsm)}, {"wsm_minus_wsd", summary_json(c.diff)},
                         {"best_window", c.best_window}, {"best_wsm", summary_json(c.best_wsm)},
                         {"best_wsm_minus_wsd", summary_json(c.best_diff)}});
    for (const auto& g : summarize_granularity(r.rows))
      granularity.push_back({{"shape", g.shape}, {"duration", g.duration}, {"checkpoints", g.count}, {"interval", g.interval},
                             {"seeds", g.seeds}, {"wsm", summary_json(g.wsm)}, {"wsm_minus_wsd", summary_json(g.diff)}});
    for (const auto& e : phase_evidence(r.rows, cells, r.config.value("steps", std::int64_t(0))))
      phases.push_back({{"duration", e.duration}, {"trunk_fall", summary_json(e.trunk_fall)}, {"decay_gain", e.decay_gain},
                        {"phase", phase_name(e.phase)}});
    body = study_markdown(r, cells);
  } else {
    const auto ranked = rank_models(r.rows, r.order);
    for (std::size_t i = 0; i < ranked.size(); ++i) summary.push_back({{"rank", i + 1}, {"path", ranked[i]->path.string()}, {"score", *ranked[i]->score}});
    for (const auto& c : baseline_comparisons(r.rows, r.order))
      comparisons.push_back({{"merge", c.merge->path.string()}, {"shape", c.merge->shape}, {"window", c.merge->window},
                             {"baseline", c.baseline->name}, {"difference", c.difference},
                             {"margin", c.margin ? json(*c.margin) : json(nullptr)}, {"verdict", c.verdict}});
    body = sweep_markdown(r, ranked);
  }
  const auto pictures = draw_figures(r, dir);

  json regime = r.regime;
  if (study) regime["phases"] = phases;
  json doc = {{"mode", study ? "study" : "sweep"}, {"command", r.command_line}, {"version", std::string(wsm_version())},
              {"wall_seconds", r.wall_seconds}, {"evaluator", r.evaluator},
              {"higher_is_better", r.order == ScoreOrder::higher_is_better}, {"config", r.config},
              {"regime", regime}, {"results", results}, {"summary", summary}, {"errors", errors}};
  if (study) {
    doc["granularity"] = granularity;
    doc["training"] = {{"seconds", r.training.seconds}, {"runs_timed", r.training.timed}, {"runs", r.training.runs}};
  }
  if (!study) doc["baseline_comparisons"] = comparisons;
  write_file_atomic(dir / "results.json", doc.dump(2));
  write_file_atomic(dir / "results.csv", results_csv(r.rows));

  std::string md = fmt::format("# wsm compare {}\n\n", study ? "study" : "sweep") + body;
  if (!errors.empty()) {
    md += "\n## Errors\n\n";
    for (const auto& e : errors) md += "- " + e.get<std::string>() + "\n";
  }
  md += "\n## Pictures\n\n";
  for (const auto& [file, caption] : pictures) md += fmt::format("![{}]({}.png)\n\n*{}* ([SVG]({}.svg))\n\n", caption, file, caption, file);
  md += fmt::format(
      "## How it was run\n\n- command: `{}`\n- wsm {}\n- wall time {}{}\n- evaluator: {}\n- settings: `{}`\n- every "
      "scored model, its sources and weights: results.json and results.csv\n",
      r.command_line, wsm_version(), fmt::format("{:.0f} s", r.wall_seconds), study ? training_text(r.training) : "",
      r.evaluator, r.config.dump());
  write_file_atomic(dir / "report.md", md);
  return md;
}

}  // namespace wsm::tools::compare
