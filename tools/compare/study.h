#pragma once
// Study mode of `wsm compare`: the paper's experiment in small on wsm's own GPT. Per seed, one
// constant-LR trunk with a checkpoint every K steps and full states kept at the branch points; per
// decay duration D and shape X, a WSD branch resumed from the trunk's state at S-D and decayed to S;
// WSM merges of the trunk's checkpoints over windows W <= D; all scored on the same held-out
// positions. Re-running the same command reuses finished runs, merges and scores.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "wsm/schedules/decay.h"
#include "tools/compare/results.h"

namespace wsm::tools::compare {

struct StudyOptions {
  std::string preset = "small";
  std::int64_t steps = 600;                 // S: where every method is compared
  std::int64_t every = 10;                  // K: checkpoint interval of the trunk and branches
  std::vector<std::uint64_t> seeds{1, 2, 3};
  std::vector<std::int64_t> durations;      // D in steps (resolved from percentages at the command line)
  std::vector<DecayShape> shapes{DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt};
  std::vector<std::int64_t> windows;        // merge windows besides each D; empty: D/4 and D/2
  // Checkpoint-interval ablation: for each D, merges over W = D of only this many evenly spaced
  // checkpoints (every D/g steps, the newest at S), subsampled from the trunk's; empty: none.
  std::vector<std::int64_t> granularity;
  int jobs = 1;                             // training processes at once
  int threads = 0;                          // threads per training process; 0: cores / jobs
  std::int64_t eval_positions = 131072;
  int batch_size = 0;                       // 0: the preset's
  std::filesystem::path data, val;          // empty: the Austen corpus
  std::string merger;                       // stream the trunks to this `wsm serve` too (online merges)
  std::filesystem::path out;
};

struct StudyResult {
  std::vector<ScoredModel> rows;
  TrainingTime training;   // the training runs' recorded wall times
  nlohmann::json regime;   // tokens, params, tokens_per_param, batch tokens
  nlohmann::json config;   // the options, as run
};

StudyResult run_study(const StudyOptions& options);

// The trunk checkpoints a granularity-ablation merge uses: `count` of them, D / count steps apart,
// the newest at `steps` (S). Throws wsm::Error naming the option when D / count is not a multiple of
// the checkpoint interval (`every`) or count < 2.
std::vector<std::int64_t> granularity_steps(std::int64_t steps, std::int64_t duration, std::int64_t count,
                                            std::int64_t every);

// Merge windows of a study: each duration D, plus the extra windows (or D/4 and D/2), each rounded
// down to a multiple of `every`, at least two checkpoints long and at most max(D).
std::vector<std::int64_t> study_windows(const StudyOptions& options);

}  // namespace wsm::tools::compare
