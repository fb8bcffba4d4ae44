#include "trainer/gpt_cuda.h"

#include <cmath>

#include "trainer/backend.h"
#include "trainer/cuda_resources.h"
#include "trainer/layers_cuda.h"

namespace wsm::trainer {

using cuda::DeviceBuffer;

bool cuda_device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

struct GptCuda::Impl {
  GptConfig cfg;
  std::vector<ParamSpec> layout;
  cuda::CublasHandle cublas;
  DeviceBuffer<float> params, grads, m, v, partial;
  std::int64_t t = 0;
  int B = 0, T = 0;
  DeviceBuffer<std::int32_t> tokens, targets;
  DeviceBuffer<float> encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, att, attproj, residual2, ln2, ln2_mean, ln2_rstd,
      fch, fch_gelu, fcproj, residual3, lnf, lnf_mean, lnf_rstd, logits, probs, losses;
  DeviceBuffer<float> dres, dln, dqkv, datty, dfch, dfch_gelu, dlogits, dpre;

  explicit Impl(const GptConfig& c) : cfg(c), layout(param_layout(c)) {
    const std::size_t n = num_params(c);
    params.resize(n);
    grads.resize(n);
    partial.resize(1024);
  }

  void resize(int b, int tt) {
    if (b == B && tt == T) return;
    B = b;
    T = tt;
    const std::size_t BT = std::size_t(B) * T, C = cfg.n_embd, L = cfg.n_layer, V = cfg.vocab_size;
    tokens.resize(BT);
    targets.resize(BT);
    encoded.resize(BT * C);
    ln1.resize(L * BT * C);
    ln1_mean.resize(L * BT);
    ln1_rstd.resize(L * BT);
    qkv.resize(L * BT * 3 * C);
    atty.resize(L * BT * C);
    att.resize(L * B * cfg.n_head * std::size_t(T) * T);
    attproj.resize(L * BT * C);
    residual2.resize(L * BT * C);
    ln2.resize(L * BT * C);
    ln2_mean.resize(L * BT);
    ln2_rstd.resize(L * BT);
    fch.resize(L * BT * 4 * C);
    fch_gelu.resize(L * BT * 4 * C);
    fcproj.resize(L * BT * C);
    residual3.resize(L * BT * C);
    lnf.resize(BT * C);
    lnf_mean.resize(BT);
    lnf_rstd.resize(BT);
    logits.resize(BT * V);
    probs.resize(BT * V);
    losses.resize(BT);
    dres.resize(BT * C);
    dln.resize(BT * C);
    dqkv.resize(BT * 3 * C);
    datty.resize(BT * C);
    dfch.resize(BT * 4 * C);
    dfch_gelu.resize(BT * 4 * C);
    dlogits.resize(BT * V);
    dpre.resize(B * cfg.n_head * std::size_t(T) * T);
  }
};

GptCuda::GptCuda(const GptConfig& cfg) {
  if (!cuda_device_available()) throw Error("--device cuda: no CUDA device is present (cudaGetDeviceCount found none)");
  impl_ = std::make_unique<Impl>(cfg);
}
GptCuda::~GptCuda() = default;

void GptCuda::set_params(const std::vector<float>& p) {
  if (p.size() != impl_->params.size()) throw Error("GptCuda::set_params: wrong parameter count");
  impl_->params.upload(p.data(), p.size());
}
std::vector<float> GptCuda::params() const { return impl_->params.to_host(); }
std::vector<float> GptCuda::grads() const { return impl_->grads.to_host(); }

void GptCuda::set_optim(const AdamWState<float>& st) {
  impl_->t = st.t;
  if (st.m.empty()) {
    impl_->m.resize(0);
    impl_->v.resize(0);
    return;
  }
  impl_->m.upload(st.m.data(), st.m.size());
  impl_->v.upload(st.v.data(), st.v.size());
}
AdamWState<float> GptCuda::optim() const {
  AdamWState<float> st;
  st.t = impl_->t;
  if (impl_->m.size()) {
    st.m = impl_->m.to_host();
    st.v = impl_->v.to_host();
  }
  return st;
}

double GptCuda::forward(std::span<const std::int32_t> tok, std::span<const std::int32_t> tgt, int B, int T) {
  auto& s = *impl_;
  const auto& cfg = s.cfg;
  if (T <= 0 || T > cfg.block_size || B <= 0 || tok.size() != std::size_t(B) * T || tgt.size() != tok.size())
    throw Error("GptCuda forward: bad batch shape");
  for (auto x : tok)
    if (x < 0 || x >= cfg.vocab_size) throw Error("GptCuda forward: token id out of vocabulary");
  for (auto x : tgt)
    if (x < 0 || x >= cfg.vocab_size) throw Error("GptCuda forward: target id out of vocabulary");
  s.resize(B, T);
  s.tokens.upload(tok.data(), tok.size());
  s.targets.upload(tgt.data(), tgt.size());
  const int C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size, N = B * T;
  const std::size_t BTC = std::size_t(N) * C, BT = N, att_size = std::size_t(B) * NH * T * T;
  ParamView<float> p(cfg, s.params.get());
  auto h = s.cublas.get();
  using namespace cuda;
  cuda::encoder_forward(s.encoded.get(), s.tokens.get(), p.wte(), p.wpe(), B, T, C);
  for (int l = 0; l < cfg.n_layer; ++l) {
    const float* residual = l == 0 ? s.encoded.get() : s.residual3.get() + (l - 1) * BTC;
    float* ln1 = s.ln1.get() + l * BTC;
    float* qkv = s.qkv.get() + l * 3 * BTC;
    float* atty = s.atty.get() + l * BTC;
    float* att = s.att.get() + l * att_size;
    float* attproj = s.attproj.get() + l * BTC;
    float* res2 = s.residual2.get() + l * BTC;
    float* ln2 = s.ln2.get() + l * BTC;
    float* fch = s.fch.get() + l * 4 * BTC;
    float* fchg = s.fch_gelu.get() + l * 4 * BTC;
    float* fcproj = s.fcproj.get() + l * BTC;
    float* res3 = s.residual3.get() + l * BTC;
    cuda::layernorm_forward(ln1, s.ln1_mean.get() + l * BT, s.ln1_rstd.get() + l * BT, residual, p.ln1w(l), p.ln1b(l), N, C);
    cuda::matmul_forward(h, qkv, ln1, p.qkvw(l), p.qkvb(l), N, C, 3 * C);
    cuda::attention_forward(atty, att, qkv, B, T, C, NH);
    cuda::matmul_forward(h, attproj, atty, p.attprojw(l), p.attprojb(l), N, C, C);
    cuda::residual_forward(res2, residual, attproj, int(BTC));
    cuda::layernorm_forward(ln2, s.ln2_mean.get() + l * BT, s.ln2_rstd.get() + l * BT, res2, p.ln2w(l), p.ln2b(l), N, C);
    cuda::matmul_forward(h, fch, ln2, p.fcw(l), p.fcb(l), N, C, 4 * C);
    cuda::gelu_forward(fchg, fch, int(4 * BTC));
    cuda::matmul_forward(h, fcproj, fchg, p.fcprojw(l), p.fcprojb(l), N, 4 * C, C);
    cuda::residual_forward(res3, res2, fcproj, int(BTC));
  }
  const float* last = s.residual3.get() + (cfg.n_layer - 1) * BTC;
  cuda::layernorm_forward(s.lnf.get(), s.lnf_mean.get(), s.lnf_rstd.get(), last, p.lnfw(), p.lnfb(), N, C);
  cuda::matmul_forward(h, s.logits.get(), s.lnf.get(), p.wte(), nullptr, N, C, V);
  cuda::softmax_crossentropy_forward(s.probs.get(), s.losses.get(), s.logits.get(), s.targets.get(), N, V);
  const auto losses = s.losses.to_host();
  double sum = 0;
  for (float x : losses) sum += double(x);
  return sum / N;
}

void GptCuda::zero_grad() { impl_->grads.zero(); }

void GptCuda::backward() {
  auto& s = *impl_;
  const auto& cfg = s.cfg;
  const int B = s.B, T = s.T, C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size, N = B * T;
  if (N == 0) throw Error("GptCuda backward: no forward pass yet");
  const std::size_t BTC = std::size_t(N) * C, BT = N, att_size = std::size_t(B) * NH * T * T;
  ParamView<float> p(cfg, s.params.get());
  ParamView<float> g(cfg, s.grads.get());
  auto h = s.cublas.get();

  s.dlogits.zero();
  cuda::softmax_crossentropy_backward(s.dlogits.get(), s.probs.get(), s.targets.get(), 1.0f / float(N), N, V);
  s.dln.zero();
  cuda::matmul_backward(h, s.dln.get(), g.wte(), nullptr, s.dlogits.get(), s.lnf.get(), p.wte(), N, C, V);
  s.dres.zero();
  const float* last = s.residual3.get() + (cfg.n_layer - 1) * BTC;
  cuda::layernorm_backward(s.dres.get(), g.lnfw(), g.lnfb(), s.dln.get(), last, p.lnfw(), s.lnf_mean.get(),
                           s.lnf_rstd.get(), N, C);
  for (int l = cfg.n_layer - 1; l >= 0; --l) {
    const float* residual = l == 0 ? s.encoded.get() : s.residual3.get() + (l - 1) * BTC;
    const float* ln1 = s.ln1.get() + l * BTC;
    const float* qkv = s.qkv.get() + l * 3 * BTC;
    const float* atty = s.atty.get() + l * BTC;
    const float* att = s.att.get() + l * att_size;
    const float* res2 = s.residual2.get() + l * BTC;
    const float* ln2 = s.ln2.get() + l * BTC;
    const float* fch = s.fch.get() + l * 4 * BTC;
    const float* fchg = s.fch_gelu.get() + l * 4 * BTC;
    s.dfch_gelu.zero();
    cuda::matmul_backward(h, s.dfch_gelu.get(), g.fcprojw(l), g.fcprojb(l), s.dres.get(), fchg, p.fcprojw(l), N, 4 * C, C);
    s.dfch.zero();
    cuda::gelu_backward(s.dfch.get(), fch, s.dfch_gelu.get(), int(4 * BTC));
    s.dln.zero();
    cuda::matmul_backward(h, s.dln.get(), g.fcw(l), g.fcb(l), s.dfch.get(), ln2, p.fcw(l), N, C, 4 * C);
    cuda::layernorm_backward(s.dres.get(), g.ln2w(l), g.ln2b(l), s.dln.get(), res2, p.ln2w(l), s.ln2_mean.get() + l * BT,
                             s.ln2_rstd.get() + l * BT, N, C);
    s.datty.zero();
    cuda::matmul_backward(h, s.datty.get(), g.attprojw(l), g.attprojb(l), s.dres.get(), atty, p.attprojw(l), N, C, C);
    s.dqkv.zero();
    cuda::attention_backward(s.dqkv.get(), s.dpre.get(), s.datty.get(), qkv, att, B, T, C, NH);
    s.dln.zero();
    cuda::matmul_backward(h, s.dln.get(), g.qkvw(l), g.qkvb(l), s.dqkv.get(), ln1, p.qkvw(l), N, C, 3 * C);
    cuda::layernorm_backward(s.dres.get(), g.ln1w(l), g.ln1b(l), s.dln.get(), residual, p.ln1w(l),
                             s.ln1_mean.get() + l * BT, s.ln1_rstd.get() + l * BT, N, C);
  }
  cuda::encoder_backward(g.wte(), g.wpe(), s.dres.get(), s.tokens.get(), B, T, C);
}

double GptCuda::clip_grad_norm(double max_norm) {
  auto& s = *impl_;
  const int blocks = cuda::sumsq_partials(s.partial.get(), s.grads.get(), s.grads.size(), int(s.partial.size()));
  std::vector<float> part(static_cast<std::size_t>(blocks));
  cuda::check(cudaMemcpy(part.data(), s.partial.get(), part.size() * sizeof(float), cudaMemcpyDeviceToHost), "norm");
  double sum = 0;
  for (float x : part) sum += double(x);
  const double norm = std::sqrt(sum);
  if (max_norm > 0 && norm > max_norm) cuda::scale_inplace(s.grads.get(), float(max_norm / (norm + 1e-6)), s.grads.size());
  return norm;
}

void GptCuda::adamw_step(const AdamWConfig& cfg, double lr) {
  auto& s = *impl_;
  if (s.m.size() == 0) {
    s.m.resize(s.params.size());
    s.v.resize(s.params.size());
  }
  s.t += 1;
  const float bc1 = float(1.0 - std::pow(cfg.beta1, double(s.t)));
  const float bc2_sqrt = float(std::sqrt(1.0 - std::pow(cfg.beta2, double(s.t))));
  for (const auto& spec : s.layout) {
    const float decay = spec.decay ? 1.0f - float(lr) * float(cfg.weight_decay) : 1.0f;
    cuda::adamw(s.params.get() + spec.offset, s.grads.get() + spec.offset, s.m.get() + spec.offset,
                s.v.get() + spec.offset, spec.numel, float(cfg.beta1), float(cfg.beta2), float(cfg.eps),
                float(lr) / bc1, bc2_sqrt, decay);
  }
}

namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend(const GptConfig& cfg, const AdamWConfig& opt, double clip) : model_(cfg), opt_(opt), clip_(clip) {}
  std::string name() const override { return "cuda"; }
  StepResult step(const Batch& batch, int B, int T, double lr) override {
    StepResult r;
    r.loss = model_.forward(batch.tokens, batch.targets, B, T);
    model_.zero_grad();
    model_.backward();
    r.grad_norm = model_.clip_grad_norm(clip_);
    model_.adamw_step(opt_, lr);
    return r;
  }
  void upload(const std::vector<float>& params, const AdamWState<float>& optim) override {
    model_.set_params(params);
    model_.set_optim(optim);
  }
  void download(std::vector<float>& params, AdamWState<float>& optim) override {
    params = model_.params();
    optim = model_.optim();
  }

 private:
  GptCuda model_;
  AdamWConfig opt_;
  double clip_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const GptConfig& cfg, const AdamWConfig& opt, double clip) {
  return std::make_unique<CudaBackend>(cfg, opt, clip);
}

}  // namespace wsm::trainer
