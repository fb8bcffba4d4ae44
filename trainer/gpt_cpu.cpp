#include "wsm/trainer/gpt_cpu.h"

#include <algorithm>

#include "wsm/core/error.h"
#include "trainer/layers_cpu.h"

namespace wsm::trainer {

template <class F>
GptCpu<F>::GptCpu(const GptConfig& cfg) : cfg_(cfg) {
  if (cfg.vocab_size <= 0 || cfg.n_embd % cfg.n_head != 0)
    throw Error("GPT config: vocab_size must be > 0 and n_embd a multiple of n_head");
  params_.assign(num_params(cfg), F(0));
  grads_.assign(params_.size(), F(0));
}

template <class F>
void GptCpu<F>::resize(int B, int T) {
  if (B == B_ && T == T_) return;
  B_ = B;
  T_ = T;
  const std::size_t BT = std::size_t(B) * T, C = cfg_.n_embd, L = cfg_.n_layer, V = cfg_.vocab_size;
  encoded_.assign(BT * C, 0);
  ln1_.assign(L * BT * C, 0);
  ln1_mean_.assign(L * BT, 0);
  ln1_rstd_.assign(L * BT, 0);
  qkv_.assign(L * BT * 3 * C, 0);
  atty_.assign(L * BT * C, 0);
  att_.assign(L * B * cfg_.n_head * std::size_t(T) * T, 0);
  attproj_.assign(L * BT * C, 0);
  residual2_.assign(L * BT * C, 0);
  ln2_.assign(L * BT * C, 0);
  ln2_mean_.assign(L * BT, 0);
  ln2_rstd_.assign(L * BT, 0);
  fch_.assign(L * BT * 4 * C, 0);
  fch_gelu_.assign(L * BT * 4 * C, 0);
  fcproj_.assign(L * BT * C, 0);
  residual3_.assign(L * BT * C, 0);
  lnf_.assign(BT * C, 0);
  lnf_mean_.assign(BT, 0);
  lnf_rstd_.assign(BT, 0);
  logits_.assign(BT * V, 0);
  probs_.assign(BT * V, 0);
  losses_.assign(BT, 0);
  dres_.assign(BT * C, 0);
  dln_.assign(BT * C, 0);
  dqkv_.assign(BT * 3 * C, 0);
  datty_.assign(BT * C, 0);
  dfch_.assign(BT * 4 * C, 0);
  dfch_gelu_.assign(BT * 4 * C, 0);
  dlogits_.assign(BT * V, 0);
}

template <class F>
double GptCpu<F>::forward(std::span<const std::int32_t> tokens, std::span<const std::int32_t> targets, int B, int T) {
  using namespace cpu;
  if (T <= 0 || T > cfg_.block_size || B <= 0) throw Error("GPT forward: need 0 < T <= block_size and B > 0");
  if (tokens.size() != std::size_t(B) * T || (!targets.empty() && targets.size() != tokens.size()))
    throw Error("GPT forward: tokens/targets must hold B*T entries");
  for (auto t : tokens)
    if (t < 0 || t >= cfg_.vocab_size) throw Error("GPT forward: token id out of vocabulary");
  for (auto t : targets)
    if (t < 0 || t >= cfg_.vocab_size) throw Error("GPT forward: target id out of vocabulary");
  resize(B, T);
  tokens_.assign(tokens.begin(), tokens.end());
  targets_.assign(targets.begin(), targets.end());

  const int C = cfg_.n_embd, NH = cfg_.n_head, V = cfg_.vocab_size, N = B * T;
  const std::size_t BTC = std::size_t(N) * C, BT = N, att_size = std::size_t(B) * NH * T * T;
  ParamView<F> p(cfg_, params_.data());

  encoder_forward(encoded_.data(), tokens_.data(), p.wte(), p.wpe(), B, T, C);
  lap(Stage::kEncoderFwd);
  for (int l = 0; l < cfg_.n_layer; ++l) {
    const F* residual = l == 0 ? encoded_.data() : residual3_.data() + (l - 1) * BTC;
    F* ln1 = ln1_.data() + l * BTC;
    F* qkv = qkv_.data() + l * 3 * BTC;
    F* atty = atty_.data() + l * BTC;
    F* att = att_.data() + l * att_size;
    F* attproj = attproj_.data() + l * BTC;
    F* res2 = residual2_.data() + l * BTC;
    F* ln2 = ln2_.data() + l * BTC;
    F* fch = fch_.data() + l * 4 * BTC;
    F* fchg = fch_gelu_.data() + l * 4 * BTC;
    F* fcproj = fcproj_.data() + l * BTC;
    F* res3 = residual3_.data() + l * BTC;
    layernorm_forward(ln1, ln1_mean_.data() + l * BT, ln1_rstd_.data() + l * BT, residual, p.ln1w(l), p.ln1b(l), N, C);
    lap(Stage::kLayerNormFwd);
    matmul_forward(qkv, ln1, p.qkvw(l), p.qkvb(l), N, C, 3 * C);
    lap(Stage::kMatmulFwd);
    attention_forward(atty, att, qkv, B, T, C, NH);
    lap(Stage::kAttentionFwd);
    matmul_forward(attproj, atty, p.attprojw(l), p.attprojb(l), N, C, C);
    lap(Stage::kMatmulFwd);
    residual_forward(res2, residual, attproj, int(BTC));
    lap(Stage::kResidualFwd);
    layernorm_forward(ln2, ln2_mean_.data() + l * BT, ln2_rstd_.data() + l * BT, res2, p.ln2w(l), p.ln2b(l), N, C);
    lap(Stage::kLayerNormFwd);
    matmul_forward(fch, ln2, p.fcw(l), p.fcb(l), N, C, 4 * C);
    lap(Stage::kMatmulFwd);
    gelu_forward(fchg, fch, int(4 * BTC));
    lap(Stage::kGeluFwd);
    matmul_forward(fcproj, fchg, p.fcprojw(l), p.fcprojb(l), N, 4 * C, C);
    lap(Stage::kMatmulFwd);
    residual_forward(res3, res2, fcproj, int(BTC));
    lap(Stage::kResidualFwd);
  }
  const F* last = residual3_.data() + (cfg_.n_layer - 1) * BTC;
  layernorm_forward(lnf_.data(), lnf_mean_.data(), lnf_rstd_.data(), last, p.lnfw(), p.lnfb(), N, C);
  lap(Stage::kLayerNormFwd);
  matmul_forward(logits_.data(), lnf_.data(), p.wte(), static_cast<const F*>(nullptr), N, C, V);
  lap(Stage::kMatmulFwd);
  if (targets_.empty()) return 0.0;
  softmax_crossentropy_forward(probs_.data(), losses_.data(), logits_.data(), targets_.data(), N, V);
  double sum = 0;
  for (int i = 0; i < N; ++i) sum += double(losses_[i]);
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
  const std::size_t BTC = std::size_t(N) * C, BT = N, att_size = std::size_t(B) * NH * T * T;
  ParamView<F> p(cfg_, params_.data());
  ParamView<F> g(cfg_, grads_.data());
  auto zero = [](std::vector<F>& v) { std::fill(v.begin(), v.end(), F(0)); };

  zero(dlogits_);
  softmax_crossentropy_backward(dlogits_.data(), probs_.data(), targets_.data(), F(1.0 / N), N, V);
  lap(Stage::kSoftmaxCeBwd);
  zero(dln_);
  matmul_backward(dln_.data(), g.wte(), static_cast<F*>(nullptr), dlogits_.data(), lnf_.data(), p.wte(), N, C, V);
  lap(Stage::kMatmulBwd);
  zero(dres_);
  const F* last = residual3_.data() + (cfg_.n_layer - 1) * BTC;
  layernorm_backward(dres_.data(), g.lnfw(), g.lnfb(), dln_.data(), last, p.lnfw(), lnf_mean_.data(),
                     lnf_rstd_.data(), N, C);
  lap(Stage::kLayerNormBwd);

  for (int l = cfg_.n_layer - 1; l >= 0; --l) {
    const F* residual = l == 0 ? encoded_.data() : residual3_.data() + (l - 1) * BTC;
    const F* ln1 = ln1_.data() + l * BTC;
    const F* qkv = qkv_.data() + l * 3 * BTC;
    const F* atty = atty_.data() + l * BTC;
    const F* att = att_.data() + l * att_size;
    const F* res2 = residual2_.data() + l * BTC;
    const F* ln2 = ln2_.data() + l * BTC;
    const F* fch = fch_.data() + l * 4 * BTC;
    const F* fchg = fch_gelu_.data() + l * 4 * BTC;
    // dres holds d(loss)/d(residual3); it is also d/d(fcproj) and, so far, d/d(residual2).
    // (each layer's time includes zeroing the gradient buffer it accumulates into)
    zero(dfch_gelu_);
    matmul_backward(dfch_gelu_.data(), g.fcprojw(l), g.fcprojb(l), dres_.data(), fchg, p.fcprojw(l), N, 4 * C, C);
    lap(Stage::kMatmulBwd);
    zero(dfch_);
    gelu_backward(dfch_.data(), fch, dfch_gelu_.data(), int(4 * BTC));
    lap(Stage::kGeluBwd);
    zero(dln_);
    matmul_backward(dln_.data(), g.fcw(l), g.fcb(l), dfch_.data(), ln2, p.fcw(l), N, C, 4 * C);
    lap(Stage::kMatmulBwd);
    layernorm_backward(dres_.data(), g.ln2w(l), g.ln2b(l), dln_.data(), res2, p.ln2w(l), ln2_mean_.data() + l * BT,
                       ln2_rstd_.data() + l * BT, N, C);
    lap(Stage::kLayerNormBwd);
    // now dres = d/d(residual2) = d/d(attproj) and, so far, d/d(residual)
    zero(datty_);
    matmul_backward(datty_.data(), g.attprojw(l), g.attprojb(l), dres_.data(), atty, p.attprojw(l), N, C, C);
    lap(Stage::kMatmulBwd);
    zero(dqkv_);
    attention_backward(dqkv_.data(), datty_.data(), qkv, att, B, T, C, NH);
    lap(Stage::kAttentionBwd);
    zero(dln_);
    matmul_backward(dln_.data(), g.qkvw(l), g.qkvb(l), dqkv_.data(), ln1, p.qkvw(l), N, C, 3 * C);
    lap(Stage::kMatmulBwd);
    layernorm_backward(dres_.data(), g.ln1w(l), g.ln1b(l), dln_.data(), residual, p.ln1w(l),
                       ln1_mean_.data() + l * BT, ln1_rstd_.data() + l * BT, N, C);
    lap(Stage::kLayerNormBwd);
  }
  encoder_backward(g.wte(), g.wpe(), dres_.data(), tokens_.data(), B, T, C);
  lap(Stage::kEncoderBwd);
}

template class GptCpu<float>;
template class GptCpu<double>;

}  // namespace wsm::trainer
