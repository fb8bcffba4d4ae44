#pragma once
// `wsm report DIR --rescore --eval-cmd CMD`: scores what a `wsm serve --out DIR` left without a
// score (an eval command fixed after the run, or evaluation turned on late): every output whose
// record has no score, and, with the run's --store, every raw checkpoint that failed or was never
// scored, in the outputs' form. index.json is then rewritten atomically, its "best" recomputed.
// Run it while the daemon is stopped: a running daemon rewrites index.json from its own copy.
#include <cstddef>
#include <filesystem>

#include "tools/compare/scoring.h"

namespace wsm::tools {

struct RescoreSummary {
  std::size_t scored = 0, failed = 0, raw_missing = 0;  // raw_missing: raw checkpoints not in --store
};

RescoreSummary rescore_index(const std::filesystem::path& dir, const std::string& index_name,
                             const compare::Evaluator& evaluator, const std::filesystem::path& store);

}  // namespace wsm::tools
