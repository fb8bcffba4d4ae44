#pragma once
// Which emulations the daemon keeps as incremental running sums instead of re-merging the window
// (docs/protocol.md, "Running sums"). Both cases have weights that follow one geometric law over
// the window's newest checkpoints (the "tail"): c_j = c_newest * ratio^(newest - j).
//   uniform: ratio 1, every checkpoint in the tail (linear with evenly spaced checkpoints, a
//            weights= table of equal values, any selection whose weights are all equal);
//   EMA:     ratio 1 - alpha (ema:alpha=A), the oldest checkpoint weighted apart, (1-A)^k.
// Anything else (uneven spacing, cosine, 1-sqrt, WMA, ...) is merged in full.
#include <optional>
#include <span>

#include "wsm/schedules/decay.h"

namespace wsm::merger {

struct SumModel {
  double ratio = 1.0;         // weight ratio between neighbours in the tail
  bool anchor_apart = false;  // EMA: the oldest checkpoint is outside the tail
  bool operator==(const SumModel&) const = default;
};

// The model whose weights equal `weights` (oldest first) to 1e-9 relative, or nullopt.
std::optional<SumModel> sum_model(const MergeSpec& spec, std::span<const double> weights);

}  // namespace wsm::merger
