#include "tools/compare/regime.h"

namespace wsm::tools::compare {

TrainingPhase classify_phase(double trunk_fall, double decay_gain) {
  if (decay_gain <= 0) return trunk_fall > 0 ? TrainingPhase::early : TrainingPhase::stable;
  const double ratio = trunk_fall / decay_gain;
  if (ratio >= kEarlyFallPerGain) return TrainingPhase::early;
  if (ratio <= kStableFallPerGain) return TrainingPhase::stable;
  return TrainingPhase::transition;
}

std::string_view phase_name(TrainingPhase p) {
  switch (p) {
    case TrainingPhase::early: return "early";
    case TrainingPhase::transition: return "transition";
    case TrainingPhase::stable: return "stable";
  }
  return "?";
}

std::string_view phase_sentence(TrainingPhase p) {
  switch (p) {
    case TrainingPhase::early:
      return "The trunk still improves by at least half of what the decay gains: this is early training, not the long "
             "stable phase WSM's claim is about, so merges over long windows average in checkpoints that are clearly "
             "worse; read the results with that in mind.";
    case TrainingPhase::transition:
      return "The trunk still improves, by a quarter to a half of what the decay gains: between early training and the "
             "stable phase WSM's claim is about.";
    case TrainingPhase::stable:
      return "The trunk has flattened (it falls by at most a quarter of what the decay gains): this is the stable phase "
             "WSM's claim is about.";
  }
  return "";
}

}  // namespace wsm::tools::compare
