#pragma once
// Sweep mode of `wsm compare`: any model's constant-LR checkpoints on disk, merged over the cross
// product of shapes x windows (x floors), one read of the inputs per window for all its shapes, each
// merged model scored by an evaluator (wsm's own or a user's command) and ranked, beside the newest
// raw checkpoint and the user's baselines (e.g. their own WSD decay). When the inputs are Hugging
// Face model directories (Trainer checkpoint-N folders), every model scored is one, so an eval
// command can `from_pretrained` each path it gets.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "wsm/schedules/decay.h"
#include "tools/compare/results.h"
#include "tools/compare/scoring.h"

namespace wsm::tools::compare {

enum class Keep { all, best };  // which merged models stay on disk after scoring

// A model to compare the merges with (--baseline NAME=PATH): any checkpoint form wsm reads.
struct Baseline {
  std::string name;
  std::filesystem::path path;
};
// "NAME=PATH"; throws wsm::Error naming what is wrong.
Baseline parse_baseline(const std::string& text);

struct SweepOptions {
  std::vector<MergeSpec> specs;              // shapes x floors, parsed at the command line
  std::vector<std::int64_t> windows;         // steps; empty: 2, 4, 8 and 16 checkpoint intervals that fit
  Evaluator evaluator;
  Keep keep = Keep::all;
  int jobs = 1;
  std::filesystem::path out;
  std::vector<std::filesystem::path> checkpoints;
  std::vector<std::optional<std::int64_t>> checkpoint_steps;  // empty, or one per checkpoint (PATH@STEP)
  std::vector<Baseline> baselines;
};

struct SweepResult {
  std::vector<ScoredModel> rows;
  nlohmann::json config;
};

SweepResult run_sweep(const SweepOptions& options);

}  // namespace wsm::tools::compare
