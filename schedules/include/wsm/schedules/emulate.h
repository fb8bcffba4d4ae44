#pragma once
// What LR a merge emulates, step by step (for `wsm schedule --compare-merge`): checkpoints saved
// every `interval` steps ending at `steps`, a merge over the last `window` steps. An update at step
// s (0-based; checkpoint p holds updates 0..p-1) enters the merge with factor 1 before the oldest
// selected checkpoint p_0 and with factor w_i when p_{i-1} <= s < p_i, so the merge equals a run
// whose LR was lr(s) * factor(s).
#include <cstdint>
#include <vector>

#include "wsm/schedules/decay.h"

namespace wsm {

struct MergeEmulation {
  std::vector<std::int64_t> positions;  // selected checkpoint steps, oldest first
  std::vector<double> weights;          // c_j per selected checkpoint
  std::vector<double> decay;            // w_i
  std::vector<double> factor;           // per update step 0..steps-1
};

// Throws wsm::Error when steps, window or interval is not positive.
MergeEmulation emulate_merge(const MergeSpec& spec, std::int64_t steps, std::int64_t window,
                             std::int64_t interval);

}  // namespace wsm
