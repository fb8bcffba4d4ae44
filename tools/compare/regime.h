#pragma once
// Which phase of training a study looked at, classified from two numbers it measured over a decay
// duration D: how much the constant-LR trunk's loss still fell over its last D steps, and how much a
// real decay over those steps gained on the trunk. WSM's claim is about the long stable phase, where
// the trunk has flattened and most of what a decay gives comes from annealing, not from learning:
// there a merge of the window's checkpoints can stand in for the decay. Early in training the trunk
// still improves by as much as the decay gives, a long window averages in clearly worse
// checkpoints, and the study answers a different question.
#include <string_view>

namespace wsm::tools::compare {

enum class TrainingPhase { early, transition, stable };

// Thresholds on fall / gain (docs/compare.md, "Regime").
inline constexpr double kEarlyFallPerGain = 0.5;    // at or above: early training
inline constexpr double kStableFallPerGain = 0.25;  // at or below: the stable phase

// `trunk_fall`: trunk loss at S - D minus at S (nats, > 0 while it improves); `decay_gain`: trunk
// loss at S minus the WSD branch's at S. A decay that gains nothing (gain <= 0) leaves nothing for
// a merge to match: early when the trunk still falls, else stable.
TrainingPhase classify_phase(double trunk_fall, double decay_gain);

std::string_view phase_name(TrainingPhase p);  // "early", "transition", "stable"

// One sentence for a report: what the phase means for reading the comparison.
std::string_view phase_sentence(TrainingPhase p);

}  // namespace wsm::tools::compare
