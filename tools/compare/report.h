#pragma once
// The report of `wsm compare`, one output directory for both modes: results.json (every scored model
// and the summaries), results.csv, report.md (question, table, verdict, how it was run) and the
// pictures as PNG and SVG. Layout and schema: docs/compare.md.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tools/compare/results.h"
#include "tools/compare/scoring.h"
#include "tools/compare/stats.h"

namespace wsm::tools::compare {

enum class Mode { study, sweep };

struct CompareReport {
  Mode mode = Mode::study;
  std::string command_line;
  double wall_seconds = 0;      // this invocation (finished runs and scores are reused)
  std::string evaluator;        // Evaluator::describe()
  ScoreOrder order = ScoreOrder::lower_is_better;
  nlohmann::json config;        // the options as run
  nlohmann::json regime;        // study: tokens, params, peak LR, warmup
  std::vector<ScoredModel> rows;
  TrainingTime training;  // study: every training run, this invocation's or earlier ones'
};

// Study: one cell per (shape, decay duration D): the three methods at the final step over seeds, the
// paired per-seed difference WSM(W = D) - WSD, and the best merge window W <= D.
struct StudyCell {
  std::string shape;
  std::int64_t duration = 0;
  Summary raw, wsd, wsm, diff;           // diff: paired WSM - WSD per seed
  std::int64_t best_window = 0;          // the window W <= D with the best mean score
  Summary best_wsm, best_diff;
  std::vector<std::uint64_t> seeds;      // seeds with all three scored
};
std::vector<StudyCell> summarize_study(const std::vector<ScoredModel>& rows, ScoreOrder order);

// Sweep: scored models (merges, the newest raw checkpoint, baselines) ranked best first; a model
// without a finite score (its evaluation failed) is never ranked.
std::vector<const ScoredModel*> rank_models(const std::vector<ScoredModel>& rows, ScoreOrder order);

// A merge against a baseline: the score difference (merge - baseline), the noise margin (2
// combined standard errors, when the evaluator reports them: Evaluator::noise_key) and the verdict
// in plain words: "better", "worse", or "equal within noise" (or "equal" without a margin).
struct BaselineComparison {
  const ScoredModel* merge = nullptr;
  const ScoredModel* baseline = nullptr;
  double difference = 0;
  std::optional<double> margin;
  std::string verdict;
};
BaselineComparison compare_with_baseline(const ScoredModel& merge, const ScoredModel& baseline, ScoreOrder order);
// Every scored merge against every scored baseline, merges best first.
std::vector<BaselineComparison> baseline_comparisons(const std::vector<ScoredModel>& rows, ScoreOrder order);

// How a ranked model reads in a sentence: "1-sqrt merge over 400 steps (5 checkpoints)",
// "the newest raw checkpoint (step 600)", "baseline 'wsd'".
std::string model_words(const ScoredModel& m);

// The study's regime in words: tokens per parameter, and how fast the trunk still improves over
// each duration against what the decay gains.
std::string regime_markdown(const CompareReport& report, const std::vector<StudyCell>& cells);

// Writes every report file into `dir` (each atomically) and returns report.md's text.
std::string write_report(const CompareReport& report, const std::filesystem::path& dir);

}  // namespace wsm::tools::compare
