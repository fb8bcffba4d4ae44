// Finite-difference gradient checks, in double precision, for every CPU layer and for the whole
// model's loss. Each layer is checked through L = sum(R * out) with a random R, so its backward
// must return exactly dL/dinputs; central differences give the independent reference.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "wsm/trainer/gpt_cpu.h"
#include "trainer/layers_cpu.h"

namespace wsm::trainer {
namespace {

using V = std::vector<double>;

V randn(std::size_t n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> d(0.0, scale);
  V v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double dot(const V& a, const V& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Checks analytic gradient `grad` of loss() w.r.t. every entry of x (or every stride-th entry).
void expect_grad(const char* what, V& x, const V& grad, const std::function<double()>& loss, std::size_t stride = 1,
                 double h = 1e-5) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); i += stride) {
    const double keep = x[i];
    x[i] = keep + h;
    const double lp = loss();
    x[i] = keep - h;
    const double lm = loss();
    x[i] = keep;
    const double num = (lp - lm) / (2 * h);
    const double err = std::abs(num - grad[i]) / std::max(1e-3, std::abs(num) + std::abs(grad[i]));
    worst = std::max(worst, err);
    EXPECT_LT(err, 1e-6) << what << "[" << i << "]: analytic " << grad[i] << " vs numeric " << num;
  }
  ::testing::Test::RecordProperty(what, std::to_string(worst));
}

TEST(GradCheck, Encoder) {
  std::mt19937_64 rng(1);
  const int B = 2, T = 5, C = 4, Vocab = 7;
  V wte = randn(Vocab * C, rng), wpe = randn(T * C, rng), R = randn(B * T * C, rng), out(B * T * C);
  std::vector<std::int32_t> tok = {1, 3, 3, 0, 6, 2, 1, 1, 5, 4};
  auto loss = [&] {
    cpu::encoder_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, R);
  };
  V dwte(wte.size()), dwpe(wpe.size());
  cpu::encoder_backward(dwte.data(), dwpe.data(), R.data(), tok.data(), B, T, C);
  expect_grad("wte", wte, dwte, loss);
  expect_grad("wpe", wpe, dwpe, loss);
}

TEST(GradCheck, LayerNorm) {
  std::mt19937_64 rng(2);
  const int N = 6, C = 8;
  V x = randn(N * C, rng, 2.0), w = randn(C, rng), b = randn(C, rng), R = randn(N * C, rng);
  V out(N * C), mean(N), rstd(N);
  auto loss = [&] {
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    return dot(out, R);
  };
  loss();
  V dx(x.size()), dw(C), db(C);
  cpu::layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(), rstd.data(), N, C);
  expect_grad("x", x, dx, loss);
  expect_grad("w", w, dw, loss);
  expect_grad("b", b, db, loss);
}

TEST(GradCheck, Matmul) {
  std::mt19937_64 rng(3);
  const int N = 5, IC = 6, OC = 7;
  V x = randn(N * IC, rng), w = randn(OC * IC, rng), bias = randn(OC, rng), R = randn(N * OC, rng), out(N * OC);
  auto loss = [&] {
    cpu::matmul_forward(out.data(), x.data(), w.data(), bias.data(), N, IC, OC);
    return dot(out, R);
  };
  V dx(x.size()), dw(w.size()), db(OC);
  cpu::matmul_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), N, IC, OC);
  expect_grad("x", x, dx, loss);
  expect_grad("w", w, dw, loss);
  expect_grad("bias", bias, db, loss);
  // and against a plain double loop (the forward itself)
  loss();
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double s = bias[o];
      for (int i = 0; i < IC; ++i) s += x[n * IC + i] * w[o * IC + i];
      EXPECT_NEAR(out[n * OC + o], s, 1e-12);
    }
}

TEST(GradCheck, Attention) {
  std::mt19937_64 rng(4);
  const int B = 2, T = 6, C = 8, NH = 2;
  V qkv = randn(B * T * 3 * C, rng), R = randn(B * T * C, rng), out(B * T * C), att(B * NH * T * T);
  auto loss = [&] {
    cpu::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, R);
  };
  loss();
  V dqkv(qkv.size());
  cpu::attention_backward(dqkv.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  expect_grad("qkv", qkv, dqkv, loss);
  // causality: perturbing the last position must not change earlier outputs
  V before = out;
  qkv[(0 * T + T - 1) * 3 * C + C] += 1.0;       // a key at the last position
  qkv[(0 * T + T - 1) * 3 * C + 2 * C] += 1.0;   // a value at the last position
  loss();
  for (int t = 0; t < T - 1; ++t)
    for (int i = 0; i < C; ++i) EXPECT_EQ(out[t * C + i], before[t * C + i]) << "position " << t << " saw the future";
}

TEST(GradCheck, Gelu) {
  std::mt19937_64 rng(5);
  const int N = 40;
  V x = randn(N, rng, 2.0), R = randn(N, rng), out(N);
  auto loss = [&] {
    cpu::gelu_forward(out.data(), x.data(), N);
    return dot(out, R);
  };
  V dx(N);
  cpu::gelu_backward(dx.data(), x.data(), R.data(), N);
  expect_grad("x", x, dx, loss);
}

TEST(GradCheck, Residual) {
  std::mt19937_64 rng(6);
  const int N = 12;
  V a = randn(N, rng), b = randn(N, rng), R = randn(N, rng), out(N);
  auto loss = [&] {
    cpu::residual_forward(out.data(), a.data(), b.data(), N);
    return dot(out, R);
  };
  V da(N), db(N);
  cpu::residual_backward(da.data(), db.data(), R.data(), N);
  expect_grad("a", a, da, loss);
  expect_grad("b", b, db, loss);
}

TEST(GradCheck, SoftmaxCrossEntropy) {
  std::mt19937_64 rng(7);
  const int N = 4, Vs = 9;
  V logits = randn(N * Vs, rng, 3.0), probs(N * Vs), losses(N);
  std::vector<std::int32_t> tgt = {0, 8, 3, 3};
  auto loss = [&] {
    cpu::softmax_crossentropy_forward(probs.data(), losses.data(), logits.data(), tgt.data(), N, Vs);
    double s = 0;
    for (double l : losses) s += l;
    return s / N;
  };
  loss();
  // the loss itself against the textbook formula
  for (int n = 0; n < N; ++n) {
    double z = 0;
    for (int i = 0; i < Vs; ++i) z += std::exp(logits[n * Vs + i]);
    EXPECT_NEAR(losses[n], std::log(z) - logits[n * Vs + tgt[n]], 1e-12);
  }
  V dlogits(logits.size());
  cpu::softmax_crossentropy_backward(dlogits.data(), probs.data(), tgt.data(), 1.0 / N, N, Vs);
  expect_grad("logits", logits, dlogits, loss);
}

TEST(GradCheck, WholeModelLoss) {
  GptConfig cfg{.vocab_size = 11, .block_size = 8, .n_layer = 2, .n_head = 2, .n_embd = 8};
  GptCpu<double> model(cfg);
  auto init = init_params(cfg, 42);
  // larger weights than GPT-2's 0.02 so every path carries a visible gradient
  for (std::size_t i = 0; i < init.size(); ++i) model.params()[i] = double(init[i]) * 5.0;
  std::mt19937_64 rng(8);
  const int B = 2, T = 6;
  std::vector<std::int32_t> tok(B * T), tgt(B * T);
  for (auto& t : tok) t = std::int32_t(rng() % cfg.vocab_size);
  for (auto& t : tgt) t = std::int32_t(rng() % cfg.vocab_size);
  auto loss = [&] { return model.forward(tok, tgt, B, T); };
  loss();
  model.zero_grad();
  model.backward();
  V grads = model.grads();
  // every parameter tensor, a spread of entries in each
  for (const auto& spec : param_layout(cfg)) {
    V slice(model.params().begin() + spec.offset, model.params().begin() + spec.offset + spec.numel);
    V gslice(grads.begin() + spec.offset, grads.begin() + spec.offset + spec.numel);
    auto sliced_loss = [&] {
      std::copy(slice.begin(), slice.end(), model.params().begin() + spec.offset);
      return loss();
    };
    expect_grad(spec.name.c_str(), slice, gslice, sliced_loss, spec.numel > 64 ? 7 : 1, 1e-6);
    std::copy(slice.begin(), slice.end(), model.params().begin() + spec.offset);
  }
}

}  // namespace
}  // namespace wsm::trainer
