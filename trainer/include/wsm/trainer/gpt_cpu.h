#pragma once
// The GPT model on the CPU: parameters, gradients and activations as flat arrays, one forward and
// one backward pass composed from layers_cpu.h. Templated on the float type so the double version
// can be finite-difference checked end to end.
#include <cstdint>
#include <span>
#include <vector>

#include "wsm/trainer/activations.h"
#include "wsm/trainer/model.h"
#include "wsm/trainer/step_profile.h"

namespace wsm::trainer {

template <class F>
class GptCpu {
 public:
  explicit GptCpu(const GptConfig& cfg);

  const GptConfig& config() const { return cfg_; }
  std::vector<F>& params() { return params_; }
  const std::vector<F>& params() const { return params_; }
  std::vector<F>& grads() { return grads_; }
  const std::vector<F>& grads() const { return grads_; }

  // tokens/targets are [B, T] with T <= block_size. Returns the mean cross-entropy (nats). With
  // targets empty only the logits are computed (generation, probes).
  double forward(std::span<const std::int32_t> tokens, std::span<const std::int32_t> targets, int B, int T);
  // Per-position losses of the last forward, [B, T].
  std::span<const F> losses() const { return act_.losses; }
  // Adds d(mean loss)/d(params) of the last forward into grads(). Call zero_grad() before.
  void backward();
  void zero_grad();
  // Books each layer's time into p (null: no profiling). p must outlive the model's use of it.
  void set_profile(StepProfile* p) { profile_ = p; }
  StepProfile* profile() const { return profile_; }

 private:
  void resize(int B, int T);
  void lap(Stage s) {
    if (profile_) profile_->lap(s);
  }

  GptConfig cfg_;
  std::vector<F> params_, grads_;
  int B_ = 0, T_ = 0;
  std::vector<std::int32_t> tokens_, targets_;
  Activations<std::vector<F>> act_;
  StepProfile* profile_ = nullptr;
};

extern template class GptCpu<float>;
extern template class GptCpu<double>;

}  // namespace wsm::trainer
