#pragma once
// AdamW exactly as torch.optim.AdamW computes it (decoupled weight decay, bias-corrected moments),
// with decay applied to matrices only, plus global gradient-norm clipping as in
// torch.nn.utils.clip_grad_norm_.
#include <cstdint>
#include <span>
#include <vector>

#include "wsm/trainer/model.h"

namespace wsm::trainer {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

template <class F>
struct AdamWState {
  std::vector<F> m, v;  // first and second moments, same layout as the parameters
  std::int64_t t = 0;   // updates applied so far
};

// One update at learning rate lr: p *= 1 - lr*wd (decay tensors only), then
// p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
template <class F>
void adamw_step(std::span<F> params, std::span<const F> grads, AdamWState<F>& state, const AdamWConfig& cfg,
                const std::vector<ParamSpec>& layout, double lr);

// Global L2 norm of grads (accumulated in double); when it exceeds max_norm > 0 the grads are scaled
// by max_norm / (norm + 1e-6). Returns the norm before clipping.
template <class F>
double clip_grad_norm(std::span<F> grads, double max_norm);

}  // namespace wsm::trainer
