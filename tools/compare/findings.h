#pragma once
// What a study found beyond its main table, each computed from its rows: the training phase per
// decay duration (tools/compare/regime.h), the checkpoint-interval (granularity) ablation, and the
// paper's three findings set beside ours (shape ranking, longer merge durations, diminishing returns
// in the number of checkpoints).
#include <cstdint>
#include <string>
#include <vector>

#include "tools/compare/regime.h"
#include "tools/compare/report.h"

namespace wsm::tools::compare {

// Per duration D: how much the trunk still fell over its last D steps (over seeds), what the WSD
// decays over D gained on the trunk (averaged over shapes), and the phase that makes.
struct PhaseEvidence {
  std::int64_t duration = 0;
  Summary trunk_fall;
  double decay_gain = 0;
  TrainingPhase phase = TrainingPhase::early;
};
std::vector<PhaseEvidence> phase_evidence(const std::vector<ScoredModel>& rows, const std::vector<StudyCell>& cells,
                                          std::int64_t steps);

// Per (shape, D, checkpoints per window g): the merge over W = D of g evenly spaced checkpoints,
// and its paired difference to the WSD branch.
struct GranularityCell {
  std::string shape;
  std::int64_t duration = 0, count = 0, interval = 0;
  Summary wsm, diff;
  std::vector<std::uint64_t> seeds;
};
std::vector<GranularityCell> summarize_granularity(const std::vector<ScoredModel>& rows);

// Markdown sections: "Checkpoints per window" (when the ablation ran) and "The paper's findings, here".
std::string granularity_markdown(const std::vector<GranularityCell>& cells, ScoreOrder order);
std::string paper_findings_markdown(const std::vector<ScoredModel>& rows, const std::vector<StudyCell>& cells,
                                    const std::vector<GranularityCell>& granularity,
                                    ScoreOrder order);

}  // namespace wsm::tools::compare
