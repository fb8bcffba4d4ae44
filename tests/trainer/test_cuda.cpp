// The CUDA backend against the CPU reference: one training step (loss, every gradient tensor, the
// updated weights) on the same tiny model and batch. Skips with a message without a CUDA device;
// the build without CUDA checks that --device cuda reports its absence (see test_resume.cpp).
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/backend.h"
#include "trainer/step.h"
#ifdef WSM_HAVE_CUDA
#include "trainer/gpt_cuda.h"
#endif

namespace wsm::trainer {
namespace {

TEST(Cuda, OneStepMatchesCpu) {
#ifndef WSM_HAVE_CUDA
  GTEST_SKIP() << "built without CUDA (WSM_CUDA=OFF or no nvcc): nothing to compare";
#else
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device present: the GPU comparison needs one";
  const GptConfig cfg{.vocab_size = 37, .block_size = 64, .n_layer = 2, .n_head = 4, .n_embd = 64};
  const int B = 4, T = 48;
  std::vector<std::int32_t> data(20000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::int32_t((i * 31 + i / 7) % cfg.vocab_size);
  const Batch batch = batch_at(data, 5, 0, B, T);
  const auto init = init_params(cfg, 11);

  GptCpu<float> cpu(cfg);
  cpu.params() = init;
  GptCuda gpu(cfg);
  gpu.set_params(init);

  const double lc = cpu.forward(batch.tokens, batch.targets, B, T);
  const double lg = gpu.forward(batch.tokens, batch.targets, B, T);
  EXPECT_NEAR(lg, lc, 1e-5 * std::abs(lc));
  cpu.zero_grad();
  cpu.backward();
  gpu.zero_grad();
  gpu.backward();
  const auto gg = gpu.grads();
  for (const auto& s : param_layout(cfg)) {
    double diff = 0, ref = 0;
    for (std::size_t i = s.offset; i < s.offset + s.numel; ++i) {
      diff += double(gg[i] - cpu.grads()[i]) * double(gg[i] - cpu.grads()[i]);
      ref += double(cpu.grads()[i]) * double(cpu.grads()[i]);
    }
    ASSERT_GT(ref, 0) << s.name;
    EXPECT_LT(std::sqrt(diff / ref), 1e-4) << s.name;
  }
  // clip + AdamW on the device vs on the host
  AdamWConfig opt;
  AdamWState<float> st;
  const double nc = clip_grad_norm<float>(cpu.grads(), 0.5);
  const double ng = gpu.clip_grad_norm(0.5);
  EXPECT_NEAR(ng, nc, 1e-4 * nc);
  adamw_step<float>(cpu.params(), cpu.grads(), st, opt, param_layout(cfg), 1e-3);
  gpu.adamw_step(opt, 1e-3);
  const auto pg = gpu.params();
  double worst = 0;
  for (std::size_t i = 0; i < pg.size(); ++i) worst = std::max(worst, double(std::abs(pg[i] - cpu.params()[i])));
  EXPECT_LT(worst, 1e-5) << "updated weights differ";
#endif
}

TEST(Cuda, TrainingBackendLowersTheLoss) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device present";
  const GptConfig cfg{.vocab_size = 20, .block_size = 32, .n_layer = 2, .n_head = 2, .n_embd = 32};
  std::vector<std::int32_t> data(5000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::int32_t((i * i) % 20);
  auto be = make_cuda_backend(cfg, AdamWConfig{}, 1.0);
  be->upload(init_params(cfg, 1), {});
  double first = 0, last = 0;
  for (int s = 0; s < 60; ++s) {
    const auto r = be->step(batch_at(data, 1, s, 8, 32), 8, 32, 3e-3);
    if (s == 0) first = r.loss;
    last = r.loss;
  }
  EXPECT_LT(last, 0.7 * first);
}

}  // namespace
}  // namespace wsm::trainer
