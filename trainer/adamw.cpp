#include "wsm/trainer/adamw.h"

#include <algorithm>
#include <cmath>

#include "wsm/core/error.h"
#include "trainer/thread_pool.h"

namespace wsm::trainer {

template <class F>
void adamw_step(std::span<F> params, std::span<const F> grads, AdamWState<F>& state, const AdamWConfig& cfg,
                const std::vector<ParamSpec>& layout, double lr) {
  if (grads.size() != params.size()) throw Error("adamw_step: params and grads differ in size");
  if (state.m.empty()) {
    state.m.assign(params.size(), F(0));
    state.v.assign(params.size(), F(0));
  }
  if (state.m.size() != params.size() || state.v.size() != params.size())
    throw Error("adamw_step: optimizer state does not match the parameters");
  state.t += 1;
  const F b1 = F(cfg.beta1), b2 = F(cfg.beta2), eps = F(cfg.eps);
  const F bc1 = F(1.0 - std::pow(cfg.beta1, double(state.t)));
  const F bc2_sqrt = F(std::sqrt(1.0 - std::pow(cfg.beta2, double(state.t))));
  const F step_size = F(lr) / bc1;
  // One parallel loop over fixed blocks of the flat buffer; a block updates the pieces of the
  // tensors it overlaps, each with that tensor's decay.
  const std::ptrdiff_t n = std::ptrdiff_t(params.size()), block = 1 << 15;
  cpu::parallel_for(int((n + block - 1) / block), [&](int blk) {
    const std::ptrdiff_t lo = blk * block, hi = std::min(n, lo + block);
    for (const auto& spec : layout) {
      const std::ptrdiff_t begin = std::max(lo, std::ptrdiff_t(spec.offset));
      const std::ptrdiff_t end = std::min(hi, std::ptrdiff_t(spec.offset + spec.numel));
      const F decay = spec.decay ? F(1) - F(lr) * F(cfg.weight_decay) : F(1);
      for (std::ptrdiff_t i = begin; i < end; ++i) {
        F g = grads[i];
        F m = state.m[i] = b1 * state.m[i] + (F(1) - b1) * g;
        F v = state.v[i] = b2 * state.v[i] + (F(1) - b2) * g * g;
        F p = params[i] * decay;
        params[i] = p - step_size * m / (std::sqrt(v) / bc2_sqrt + eps);
      }
    }
  });
}

template <class F>
double clip_grad_norm(std::span<F> grads, double max_norm) {
  // Fixed-size blocks summed in order: the norm does not depend on the thread count.
  const std::ptrdiff_t n = std::ptrdiff_t(grads.size()), block = 1 << 14, nblocks = (n + block - 1) / block;
  static thread_local std::vector<double> partial;  // kept: no allocation per step
  partial.assign(std::size_t(nblocks), 0.0);
  double* part = partial.data();  // the pool's threads see their own thread_locals, so pass the pointer
  cpu::parallel_for(int(nblocks), [&](int b) {
    double s = 0;
    for (std::ptrdiff_t i = b * block; i < std::min(n, (b + 1) * block); ++i) s += double(grads[i]) * double(grads[i]);
    part[b] = s;
  });
  double sum = 0;
  for (double s : partial) sum += s;
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) {
    const F scale = F(max_norm / (norm + 1e-6));
    cpu::parallel_for(int(nblocks), [&](int b) {
      for (std::ptrdiff_t i = b * block; i < std::min(n, (b + 1) * block); ++i) grads[i] *= scale;
    });
  }
  return norm;
}

template void adamw_step<float>(std::span<float>, std::span<const float>, AdamWState<float>&, const AdamWConfig&,
                                const std::vector<ParamSpec>&, double);
template void adamw_step<double>(std::span<double>, std::span<const double>, AdamWState<double>&,
                                 const AdamWConfig&, const std::vector<ParamSpec>&, double);
template double clip_grad_norm<float>(std::span<float>, double);
template double clip_grad_norm<double>(std::span<double>, double);

}  // namespace wsm::trainer
