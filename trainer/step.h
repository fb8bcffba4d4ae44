#pragma once
// One optimisation step on the CPU model: forward, backward, clip, AdamW. Shared by the trainer
// loop, the tests and the benchmark so they all train the same way.
#include "wsm/trainer/adamw.h"
#include "wsm/trainer/data.h"
#include "wsm/trainer/gpt_cpu.h"

namespace wsm::trainer {

struct StepResult {
  double loss = 0;
  double grad_norm = 0;  // before clipping
};

template <class F>
StepResult train_step(GptCpu<F>& model, AdamWState<F>& opt, const AdamWConfig& opt_cfg, const Batch& batch, int B,
                      int T, double lr, double clip);

}  // namespace wsm::trainer
