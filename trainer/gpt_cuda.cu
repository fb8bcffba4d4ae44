#include "trainer/gpt_cuda.h"

#include <cmath>

#include "trainer/backend.h"
#include "kernels/cuda_support/cublas_loader.h"
#include "kernels/cuda_support/device_buffer.h"
#include "trainer/layers_cuda.h"
#include "wsm/trainer/activations.h"

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
  Activations<DeviceBuffer<float>> act;  // the CPU model's layout
  DeviceBuffer<float> dpre;              // attention backward's scratch, [B, NH, T, T]

  explicit Impl(const GptConfig& c) : cfg(c), layout(param_layout(c)) {
    check_config(c);
    const std::size_t n = num_params(c);
    params.resize(n);
    grads.resize(n);
    partial.resize(1024);
  }

  void resize(int b, int tt) {
    if (b == B && tt == T) return;
    B = b;
    T = tt;
    const ActivationSizes sizes = activation_sizes(cfg, B, T);
    tokens.resize(sizes.bt);
    targets.resize(sizes.bt);
    act.resize(sizes, [](DeviceBuffer<float>& buf, std::size_t n) { buf.resize(n); });
    dpre.resize(sizes.att);
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
  check_batch(cfg, tok, tgt, B, T, Targets::kRequired);  // the device pass always computes the loss
  s.resize(B, T);
  s.tokens.upload(tok.data(), tok.size());
  s.targets.upload(tgt.data(), tgt.size());
  const int C = cfg.n_embd, NH = cfg.n_head, V = cfg.vocab_size, N = B * T;
  const std::size_t BTC = std::size_t(N) * C;
  ParamView<float> p(cfg, s.params.get());
  auto h = s.cublas.get();
  const auto data = [](DeviceBuffer<float>& b) { return b.get(); };
  cuda::encoder_forward(s.act.encoded.get(), s.tokens.get(), p.wte(), p.wpe(), B, T, C);
  for (int l = 0; l < cfg.n_layer; ++l) {
    const auto x = s.act.layer(l, data);
    cuda::layernorm_forward(x.ln1, x.ln1_mean, x.ln1_rstd, x.residual, p.ln1w(l), p.ln1b(l), N, C);
    cuda::matmul_forward(h, x.qkv, x.ln1, p.qkvw(l), p.qkvb(l), N, C, 3 * C);
    cuda::attention_forward(x.atty, x.att, x.qkv, B, T, C, NH);
    cuda::matmul_forward(h, x.attproj, x.atty, p.attprojw(l), p.attprojb(l), N, C, C);
    cuda::residual_forward(x.residual2, x.residual, x.attproj, int(BTC));
    cuda::layernorm_forward(x.ln2, x.ln2_mean, x.ln2_rstd, x.residual2, p.ln2w(l), p.ln2b(l), N, C);
    cuda::matmul_forward(h, x.fch, x.ln2, p.fcw(l), p.fcb(l), N, C, 4 * C);
    cuda::gelu_forward(x.fch_gelu, x.fch, int(4 * BTC));
    cuda::matmul_forward(h, x.fcproj, x.fch_gelu, p.fcprojw(l), p.fcprojb(l), N, 4 * C, C);
    cuda::residual_forward(x.residual3, x.residual2, x.fcproj, int(BTC));
  }
  const float* last = s.act.last_residual(data);
  cuda::layernorm_forward(s.act.lnf.get(), s.act.lnf_mean.get(), s.act.lnf_rstd.get(), last, p.lnfw(), p.lnfb(), N, C);
  cuda::matmul_forward(h, s.act.logits.get(), s.act.lnf.get(), p.wte(), nullptr, N, C, V);
  cuda::softmax_crossentropy_forward(s.act.probs.get(), s.act.losses.get(), s.act.logits.get(), s.targets.get(), N, V);
  const auto losses = s.act.losses.to_host();
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
  const std::size_t BTC = std::size_t(N) * C;
  ParamView<float> p(cfg, s.params.get());
  ParamView<float> g(cfg, s.grads.get());
  auto h = s.cublas.get();
  const auto data = [](DeviceBuffer<float>& b) { return b.get(); };

  s.act.dlogits.zero();
  cuda::softmax_crossentropy_backward(s.act.dlogits.get(), s.act.probs.get(), s.targets.get(), 1.0f / float(N), N, V);
  s.act.dln.zero();
  cuda::matmul_backward(h, s.act.dln.get(), g.wte(), nullptr, s.act.dlogits.get(), s.act.lnf.get(), p.wte(), N, C, V);
  s.act.dres.zero();
  const float* last = s.act.last_residual(data);
  cuda::layernorm_backward(s.act.dres.get(), g.lnfw(), g.lnfb(), s.act.dln.get(), last, p.lnfw(), s.act.lnf_mean.get(),
                           s.act.lnf_rstd.get(), N, C);
  for (int l = cfg.n_layer - 1; l >= 0; --l) {
    const auto x = s.act.layer(l, data);
    s.act.dfch_gelu.zero();
    cuda::matmul_backward(h, s.act.dfch_gelu.get(), g.fcprojw(l), g.fcprojb(l), s.act.dres.get(), x.fch_gelu, p.fcprojw(l), N, 4 * C, C);
    s.act.dfch.zero();
    cuda::gelu_backward(s.act.dfch.get(), x.fch, s.act.dfch_gelu.get(), int(4 * BTC));
    s.act.dln.zero();
    cuda::matmul_backward(h, s.act.dln.get(), g.fcw(l), g.fcb(l), s.act.dfch.get(), x.ln2, p.fcw(l), N, C, 4 * C);
    cuda::layernorm_backward(s.act.dres.get(), g.ln2w(l), g.ln2b(l), s.act.dln.get(), x.residual2, p.ln2w(l), x.ln2_mean,
                             x.ln2_rstd, N, C);
    s.act.datty.zero();
    cuda::matmul_backward(h, s.act.datty.get(), g.attprojw(l), g.attprojb(l), s.act.dres.get(), x.atty, p.attprojw(l), N, C, C);
    s.act.dqkv.zero();
    cuda::attention_backward(s.act.dqkv.get(), s.dpre.get(), s.act.datty.get(), x.qkv, x.att, B, T, C, NH);
    s.act.dln.zero();
    cuda::matmul_backward(h, s.act.dln.get(), g.qkvw(l), g.qkvb(l), s.act.dqkv.get(), x.ln1, p.qkvw(l), N, C, 3 * C);
    cuda::layernorm_backward(s.act.dres.get(), g.ln1w(l), g.ln1b(l), s.act.dln.get(), x.residual, p.ln1w(l), x.ln1_mean,
                             x.ln1_rstd, N, C);
  }
  cuda::encoder_backward(g.wte(), g.wpe(), s.act.dres.get(), s.tokens.get(), B, T, C);
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
