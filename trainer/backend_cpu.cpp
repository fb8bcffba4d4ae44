#include "trainer/backend.h"
#include "trainer/gpt_cpu.h"

namespace wsm::trainer {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(const GptConfig& cfg, const AdamWConfig& opt, double clip) : model_(cfg), opt_cfg_(opt), clip_(clip) {}
  std::string name() const override { return "cpu"; }
  StepResult step(const Batch& batch, int B, int T, double lr) override {
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
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const GptConfig& cfg, const AdamWConfig& opt, double clip) {
  return std::make_unique<CpuBackend>(cfg, opt, clip);
}

}  // namespace wsm::trainer
