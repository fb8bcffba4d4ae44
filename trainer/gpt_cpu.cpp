#include "wsm/trainer/gpt_cpu.h"

#include <algorithm>

#include "wsm/core/error.h"
#include "trainer/layers_cpu.h"

namespace wsm::trainer {

template <class F>
GptCpu<F>::GptCpu(const GptConfig& cfg) : cfg_(cfg) {
  check_config(cfg);
  params_.assign(num_params(cfg), F(0));
  grads_.assign(params_.size(), F(0));
}

template <class F>
void GptCpu<F>::resize(int B, int T) {
  if (B == B_ && T == T_) return;
  B_ = B;
  T_ = T;
  act_.resize(activation_sizes(cfg_, B, T), [](std::vector<F>& v, std::size_t n) { v.assign(n, F(0)); });
}

template <class F>
double GptCpu<F>::forward(std::span<const std::int32_t> tokens, std::span<const std::int32_t> targets, int B, int T) {
  using namespace cpu;
  check_batch(cfg_, tokens, targets, B, T, Targets::kOptional);  // empty targets: logits only
  resize(B, T);
  tokens_.assign(tokens.begin(), tokens.end());
  targets_.assign(targets.begin(), targets.end());

  const int C = cfg_.n_embd, NH = cfg_.n_head, V = cfg_.vocab_size, N = B * T;
  const std::size_t BTC = std::size_t(N) * C;
  ParamView<F> p(cfg_, params_.data());
  const auto data = [](std::vector<F>& v) { return v.data(); };

  encoder_forward(act_.encoded.data(), tokens_.data(), p.wte(), p.wpe(), B, T, C);
  lap(Stage::kEncoderFwd);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const auto x = act_.layer(l, data);
    layernorm_forward(x.ln1, x.ln1_mean, x.ln1_rstd, x.residual, p.ln1w(l), p.ln1b(l), N, C);
    lap(Stage::kLayerNormFwd);
    matmul_forward(x.qkv, x.ln1, p.qkvw(l), p.qkvb(l), N, C, 3 * C);
    lap(Stage::kMatmulFwd);
    attention_forward(x.atty, x.att, x.qkv, B, T, C, NH);
    lap(Stage::kAttentionFwd);
    matmul_forward(x.attproj, x.atty, p.attprojw(l), p.attprojb(l), N, C, C);
    lap(Stage::kMatmulFwd);
    residual_forward(x.residual2, x.residual, x.attproj, int(BTC));
    lap(Stage::kResidualFwd);
    layernorm_forward(x.ln2, x.ln2_mean, x.ln2_rstd, x.residual2, p.ln2w(l), p.ln2b(l), N, C);
    lap(Stage::kLayerNormFwd);
    matmul_forward(x.fch, x.ln2, p.fcw(l), p.fcb(l), N, C, 4 * C);
    lap(Stage::kMatmulFwd);
    gelu_forward(x.fch_gelu, x.fch, int(4 * BTC));
    lap(Stage::kGeluFwd);
    matmul_forward(x.fcproj, x.fch_gelu, p.fcprojw(l), p.fcprojb(l), N, 4 * C, C);
    lap(Stage::kMatmulFwd);
    residual_forward(x.residual3, x.residual2, x.fcproj, int(BTC));
    lap(Stage::kResidualFwd);
  }
  const F* last = act_.last_residual(data);
  layernorm_forward(act_.lnf.data(), act_.lnf_mean.data(), act_.lnf_rstd.data(), last, p.lnfw(), p.lnfb(), N, C);
  lap(Stage::kLayerNormFwd);
  matmul_forward(act_.logits.data(), act_.lnf.data(), p.wte(), static_cast<const F*>(nullptr), N, C, V);
  lap(Stage::kMatmulFwd);
  if (targets_.empty()) return 0.0;
  softmax_crossentropy_forward(act_.probs.data(), act_.losses.data(), act_.logits.data(), targets_.data(), N, V);
  double sum = 0;
  for (int i = 0; i < N; ++i) sum += double(act_.losses[i]);
  lap(Stage::kSoftmaxCeFwd);
  return sum / N;
}

template <class F>
void GptCpu<F>::zero_grad() {
  std::fill(grads_.begin(), grads_.end(), F(0));
  lap(Stage::kZeroGrad);
}

template <class F>
void GptCpu<F>::backward() {
  using namespace cpu;
  if (targets_.empty()) throw Error("GPT backward: the last forward had no targets");
  const int B = B_, T = T_, C = cfg_.n_embd, NH = cfg_.n_head, V = cfg_.vocab_size, N = B * T;
  const std::size_t BTC = std::size_t(N) * C;
  ParamView<F> p(cfg_, params_.data());
  ParamView<F> g(cfg_, grads_.data());
  auto zero = [](std::vector<F>& v) { std::fill(v.begin(), v.end(), F(0)); };
  const auto data = [](std::vector<F>& v) { return v.data(); };

  zero(act_.dlogits);
  softmax_crossentropy_backward(act_.dlogits.data(), act_.probs.data(), targets_.data(), F(1.0 / N), N, V);
  lap(Stage::kSoftmaxCeBwd);
  zero(act_.dln);
  matmul_backward(act_.dln.data(), g.wte(), static_cast<F*>(nullptr), act_.dlogits.data(), act_.lnf.data(), p.wte(), N, C, V);
  lap(Stage::kMatmulBwd);
  zero(act_.dres);
  const F* last = act_.last_residual(data);
  layernorm_backward(act_.dres.data(), g.lnfw(), g.lnfb(), act_.dln.data(), last, p.lnfw(), act_.lnf_mean.data(),
                     act_.lnf_rstd.data(), N, C);
  lap(Stage::kLayerNormBwd);

  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    const auto x = act_.layer(l, data);
    // dres holds d(loss)/d(residual3); it is also d/d(fcproj) and, so far, d/d(residual2).
    // (each layer's time includes zeroing the gradient buffer it accumulates into)
    zero(act_.dfch_gelu);
    matmul_backward(act_.dfch_gelu.data(), g.fcprojw(l), g.fcprojb(l), act_.dres.data(), x.fch_gelu, p.fcprojw(l), N, 4 * C, C);
    lap(Stage::kMatmulBwd);
    zero(act_.dfch);
    gelu_backward(act_.dfch.data(), x.fch, act_.dfch_gelu.data(), int(4 * BTC));
    lap(Stage::kGeluBwd);
    zero(act_.dln);
    matmul_backward(act_.dln.data(), g.fcw(l), g.fcb(l), act_.dfch.data(), x.ln2, p.fcw(l), N, C, 4 * C);
    lap(Stage::kMatmulBwd);
    layernorm_backward(act_.dres.data(), g.ln2w(l), g.ln2b(l), act_.dln.data(), x.residual2, p.ln2w(l), x.ln2_mean, x.ln2_rstd, N,
                       C);
    lap(Stage::kLayerNormBwd);
    // now dres = d/d(residual2) = d/d(attproj) and, so far, d/d(residual)
    zero(act_.datty);
    matmul_backward(act_.datty.data(), g.attprojw(l), g.attprojb(l), act_.dres.data(), x.atty, p.attprojw(l), N, C, C);
    lap(Stage::kMatmulBwd);
    zero(act_.dqkv);
    attention_backward(act_.dqkv.data(), act_.datty.data(), x.qkv, x.att, B, T, C, NH);
    lap(Stage::kAttentionBwd);
    zero(act_.dln);
    matmul_backward(act_.dln.data(), g.qkvw(l), g.qkvb(l), act_.dqkv.data(), x.ln1, p.qkvw(l), N, C, 3 * C);
    lap(Stage::kMatmulBwd);
    layernorm_backward(act_.dres.data(), g.ln1w(l), g.ln1b(l), act_.dln.data(), x.residual, p.ln1w(l), x.ln1_mean,
                       x.ln1_rstd, N, C);
    lap(Stage::kLayerNormBwd);
  }
  encoder_backward(g.wte(), g.wpe(), act_.dres.data(), tokens_.data(), B, T, C);
  lap(Stage::kEncoderBwd);
}

template class GptCpu<float>;
template class GptCpu<double>;

}  // namespace wsm::trainer
