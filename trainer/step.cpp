#include "trainer/step.h"

namespace wsm::trainer {

template <class F>
StepResult train_step(GptCpu<F>& model, AdamWState<F>& opt, const AdamWConfig& opt_cfg, const Batch& batch, int B,
                      int T, double lr, double clip) {
  check_batch(model.config(), batch.tokens, batch.targets, B, T, Targets::kRequired);  // as the CUDA model does
  StepResult r;
  r.loss = model.forward(batch.tokens, batch.targets, B, T);
  model.zero_grad();
  model.backward();
  r.grad_norm = clip_grad_norm<F>(model.grads(), clip);
  if (model.profile()) model.profile()->lap(Stage::kClip);
  static thread_local std::vector<ParamSpec> layout;
  static thread_local GptConfig layout_cfg;
  if (layout.empty() || !(layout_cfg == model.config())) {
    layout = param_layout(model.config());
    layout_cfg = model.config();
  }
  adamw_step<F>(model.params(), model.grads(), opt, opt_cfg, layout, lr);
  if (model.profile()) {
    model.profile()->lap(Stage::kAdamW);
    model.profile()->count_step();
  }
  return r;
}

template StepResult train_step<float>(GptCpu<float>&, AdamWState<float>&, const AdamWConfig&, const Batch&, int, int,
                                      double, double);
template StepResult train_step<double>(GptCpu<double>&, AdamWState<double>&, const AdamWConfig&, const Batch&, int,
                                       int, double, double);

}  // namespace wsm::trainer
