// The CPU and CUDA models share one activation layout and one batch check (wsm/trainer/activations.h).
// Here, on the CPU path: the check rejects what neither model can run (empty targets for a training
// step, a head count that does not divide the width, bad shapes and ids) before anything changes, and
// the layout's per-layer slices tile each buffer exactly.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "trainer/step.h"
#include "wsm/core/error.h"
#include "wsm/trainer/activations.h"
#include "wsm/trainer/gpt_cpu.h"

namespace wsm::trainer {
namespace {

const GptConfig kCfg{.vocab_size = 11, .block_size = 8, .n_layer = 3, .n_head = 2, .n_embd = 16};

std::vector<std::int32_t> ids(std::size_t n, int vocab) {
  std::vector<std::int32_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::int32_t((i * 7 + 3) % std::size_t(vocab));
  return v;
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(BatchCheck, TrainingStepRejectsEmptyTargetsAndChangesNothing) {
  const int B = 2, T = 8;
  GptCpu<float> model(kCfg);
  const std::vector<float> init = init_params(kCfg, 5);
  model.params() = init;
  AdamWState<float> opt;
  Batch batch{ids(B * T, kCfg.vocab_size), {}};
  const std::string err = error_of([&] { train_step(model, opt, AdamWConfig{}, batch, B, T, 1e-3, 1.0); });
  EXPECT_NE(err.find("targets"), std::string::npos) << err;
  EXPECT_EQ(model.params(), init);
  EXPECT_EQ(opt.t, 0);
  // The same tokens with targets train, and the check lets a logits-only forward through.
  batch.targets = ids(B * T, kCfg.vocab_size - 1);
  EXPECT_NO_THROW(train_step(model, opt, AdamWConfig{}, batch, B, T, 1e-3, 1.0));
  EXPECT_EQ(opt.t, 1);
  EXPECT_NO_THROW(check_batch(kCfg, batch.tokens, {}, B, T, Targets::kOptional));
  EXPECT_EQ(model.forward(batch.tokens, {}, B, T), 0.0);
}

TEST(BatchCheck, RejectsHeadCountThatDoesNotDivideWidth) {
  for (int heads : {3, 0, -2}) {
    GptConfig bad = kCfg;
    bad.n_head = heads;
    const auto tok = ids(8, kCfg.vocab_size);
    const std::string err = error_of([&] { check_batch(bad, tok, tok, 1, 8, Targets::kRequired); });
    EXPECT_NE(err.find("n_head"), std::string::npos) << heads << ": " << err;
    EXPECT_NE(error_of([&] { GptCpu<float> m(bad); }).find("n_head"), std::string::npos) << heads;
  }
}

TEST(BatchCheck, RejectsBadShapesAndIds) {
  const auto tok = ids(16, kCfg.vocab_size);
  auto fails = [&](std::span<const std::int32_t> t, std::span<const std::int32_t> y, int B, int T) {
    return !error_of([&] { check_batch(kCfg, t, y, B, T, Targets::kRequired); }).empty();
  };
  EXPECT_FALSE(fails(tok, tok, 2, 8));
  EXPECT_TRUE(fails(tok, tok, 1, 16));                            // T > block_size
  EXPECT_TRUE(fails(tok, tok, 0, 8));                             // B = 0
  EXPECT_TRUE(fails(tok, std::span(tok).first(15), 2, 8));        // targets not B*T
  EXPECT_TRUE(fails(std::span(tok).first(8), std::span(tok).first(8), 2, 8));  // tokens not B*T
  std::vector<std::int32_t> out_of_vocab = tok;
  out_of_vocab[5] = kCfg.vocab_size;
  EXPECT_TRUE(fails(out_of_vocab, tok, 2, 8));
  EXPECT_TRUE(fails(tok, out_of_vocab, 2, 8));
  out_of_vocab[5] = -1;
  EXPECT_TRUE(fails(out_of_vocab, tok, 2, 8));
}

TEST(ActivationLayout, LayerSlicesTileEachBuffer) {
  const int B = 3, T = 5;
  const ActivationSizes s = activation_sizes(kCfg, B, T);
  const std::size_t C = std::size_t(kCfg.n_embd), L = std::size_t(kCfg.n_layer);
  EXPECT_EQ(s.bt, std::size_t(B * T));
  EXPECT_EQ(s.btc, std::size_t(B * T) * C);
  EXPECT_EQ(s.att, std::size_t(B) * kCfg.n_head * T * T);
  EXPECT_EQ(s.btv, std::size_t(B * T) * kCfg.vocab_size);
  Activations<std::vector<float>> act;
  act.resize(s, [](std::vector<float>& v, std::size_t n) { v.assign(n, 0.0f); });
  const auto data = [](std::vector<float>& v) { return v.data(); };
  // [L, ...] buffers: layer l's slice starts where layer l-1's ends, and the last ends at the buffer's end.
  auto expect_tiles = [&](std::vector<float>& buf, float* LayerSlices<float*>::*slice, std::size_t per_layer) {
    EXPECT_EQ(buf.size(), L * per_layer);
    for (std::size_t l = 0; l < L; ++l) EXPECT_EQ(act.layer(int(l), data).*slice, buf.data() + l * per_layer);
  };
  expect_tiles(act.ln1, &LayerSlices<float*>::ln1, C * B * T);
  expect_tiles(act.ln1_rstd, &LayerSlices<float*>::ln1_rstd, std::size_t(B * T));
  expect_tiles(act.qkv, &LayerSlices<float*>::qkv, 3 * C * B * T);
  expect_tiles(act.att, &LayerSlices<float*>::att, std::size_t(B) * kCfg.n_head * T * T);
  expect_tiles(act.fch_gelu, &LayerSlices<float*>::fch_gelu, 4 * C * B * T);
  expect_tiles(act.residual3, &LayerSlices<float*>::residual3, C * B * T);
  // Each block reads the previous block's output; the first reads the embeddings.
  EXPECT_EQ(act.layer(0, data).residual, act.encoded.data());
  for (int l = 1; l < kCfg.n_layer; ++l) EXPECT_EQ(act.layer(l, data).residual, act.layer(l - 1, data).residual3);
  EXPECT_EQ(act.last_residual(data), act.layer(kCfg.n_layer - 1, data).residual3);
  EXPECT_EQ(act.logits.size(), s.btv);
  EXPECT_EQ(act.dqkv.size(), 3 * s.btc);
}

}  // namespace
}  // namespace wsm::trainer
