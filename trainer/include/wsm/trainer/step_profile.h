#pragma once
// Where a CPU training step spends its time, by layer kind and pass, plus clipping, AdamW and the
// time between steps (batches, logging, checkpoints): set WSM_PROFILE=1 and `wsm train` prints the
// table on stderr at the end. Each layer call ends with lap(stage), which books the time since the
// previous lap; off (the default), a lap is one branch. Wall-clock time: on a busy machine, run
// it more than once.
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace wsm::trainer {

enum class Stage {
  kEncoderFwd, kLayerNormFwd, kMatmulFwd, kAttentionFwd, kGeluFwd, kResidualFwd, kSoftmaxCeFwd,
  kSoftmaxCeBwd, kMatmulBwd, kLayerNormBwd, kAttentionBwd, kGeluBwd, kResidualBwd, kEncoderBwd,
  kZeroGrad, kClip, kAdamW, kBetweenSteps, kCount
};

class StepProfile {
 public:
  // Whether WSM_PROFILE is set to something other than "" or "0".
  static bool requested();

  void restart() { last_ = Clock::now(); }
  void lap(Stage s) {
    const auto t = Clock::now();
    seconds_[std::size_t(s)] += std::chrono::duration<double>(t - last_).count();
    last_ = t;
  }
  // Ends a step. The first is warm-up (memory touched for the first time, GEMM kernels JIT-compiled)
  // and is left out of the figures.
  void count_step() {
    if (!warmed_up_) {
      warmed_up_ = true;
      seconds_.fill(0);
      return;
    }
    ++steps_;
  }
  // One line per stage: ms per step and share of the total.
  void print(std::FILE* out) const;

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point last_ = Clock::now();
  std::array<double, std::size_t(Stage::kCount)> seconds_{};
  std::int64_t steps_ = 0;
  bool warmed_up_ = false;
};

}  // namespace wsm::trainer
