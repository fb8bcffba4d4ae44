#include <spdlog/spdlog.h>

#include <cstdio>

#include "trainer/backend.h"
#include "wsm/trainer/gpt_cpu.h"
#include "trainer/sgemm_cpu.h"
#include "wsm/trainer/step_profile.h"

namespace wsm::trainer {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(const GptConfig& cfg, const AdamWConfig& opt, double clip) : model_(cfg), opt_cfg_(opt), clip_(clip) {
    if (StepProfile::requested()) model_.set_profile(&profile_);
    spdlog::info("cpu backend: float GEMMs by {}", cpu::to_string(cpu::sgemm_library()));
  }
  ~CpuBackend() override {
    if (model_.profile()) profile_.print(stderr);
  }
  std::string name() const override { return "cpu"; }
  StepResult step(const Batch& batch, int B, int T, double lr) override {
    if (model_.profile()) {
      // time since the last step ended: batches, logging, checkpoints (none before the first step)
      if (stepped_) profile_.lap(Stage::kBetweenSteps);
      else profile_.restart();
    }
    stepped_ = true;
    return train_step(model_, optim_, opt_cfg_, batch, B, T, lr, clip_);
  }
  void upload(const std::vector<float>& params, const AdamWState<float>& optim) override {
    model_.params() = params;
    optim_ = optim;
  }
  void download(std::vector<float>& params, AdamWState<float>& optim) override {
    params = model_.params();
    optim = optim_;
  }

 private:
  GptCpu<float> model_;
  AdamWState<float> optim_;
  AdamWConfig opt_cfg_;
  double clip_;
  StepProfile profile_;
  bool stepped_ = false;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const GptConfig& cfg, const AdamWConfig& opt, double clip) {
  return std::make_unique<CpuBackend>(cfg, opt, clip);
}

}  // namespace wsm::trainer
