#pragma once
// The running-sum update as a pure plan (running_sum.h applies it to tensors): given what a sum
// holds now, the selection it must now equal and which checkpoints can still be read, which
// checkpoints to subtract, add or rebuild from, and with which coefficients. No I/O, so the plan
// is tested on scalars against docs/method-guide.md's weights (tests/merger/test_running_sum_plan.cpp).
//
// The sum over the tail (oldest first) is V = sum_j ratio^(newest-j) * theta_j; the output is
// scale * V (+ anchor's coefficient * theta_anchor for EMA, whose oldest checkpoint is apart).
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "merger/daemon/sum_model.h"

namespace wsm::merger {

// What a running sum holds: its model, the steps in V (oldest first; empty: nothing yet) and the
// incremental updates since V was last rebuilt from scratch.
struct SumState {
  SumModel model;
  std::vector<std::int64_t> tail;
  int updates_since_rebuild = 0;
};

struct SumTerm {
  std::int64_t step = 0;
  double coefficient = 0;
};

struct SumUpdatePlan {
  bool rebuild = false;                 // V restarts from zero (then `add` is the whole tail)
  std::vector<SumTerm> remove;          // first: V -= coefficient * theta_step, in this order
  std::vector<std::int64_t> add;        // then, oldest first: V = ratio * V + theta_step
  double ratio = 1.0;
  SumState next;                        // the state once applied
  double scale = 0;                     // output = scale * V
  std::optional<SumTerm> anchor;        //          + anchor.coefficient * theta_anchor.step
  std::size_t reads() const { return remove.size() + add.size() + (anchor ? 1 : 0); }
};

// `steps` and `weights`: the selection (oldest first) and its c_j, which `model` reproduces
// (sum_model). `readable`: steps that can still be read (ascending), the selection's among them.
// Incremental when the new tail is the old one minus a prefix plus newer steps, every step leaving
// it is readable, the model is unchanged, fewer than `rebuild_every` updates ran since the last
// rebuild, and it reads fewer checkpoints than a rebuild; else a rebuild. Throws wsm::Error on an
// empty selection or a tail left empty.
SumUpdatePlan plan_sum_update(const SumState& state, const SumModel& model, std::span<const std::int64_t> steps,
                              std::span<const double> weights, std::span<const std::int64_t> readable,
                              int rebuild_every);

}  // namespace wsm::merger
