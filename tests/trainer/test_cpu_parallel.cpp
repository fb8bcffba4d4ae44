// The fast CPU path: its vectorised exp/tanh against libm in double, the thread pool, and the rule
// that the thread count never changes a result (the same losses, gradients and AdamW updates,
// bit for bit, with 1, 2 and 3 threads).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "wsm/trainer/adamw.h"
#include "wsm/trainer/data.h"
#include "wsm/trainer/gpt_cpu.h"
#include "trainer/layers_cpu.h"
#include "trainer/step.h"
#include "trainer/thread_pool.h"
#include "trainer/vec_math.h"

namespace wsm::trainer {
namespace {

TEST(VecMath, ExpF32MatchesLibm) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0013) {
    const double ref = std::exp(double(float(x)));
    worst = std::max(worst, std::abs(double(cpu::exp_f32(float(x))) - ref) / ref);
  }
  EXPECT_LT(worst, 2.5e-7);  // ~2 ulp of float
  EXPECT_EQ(cpu::exp_f32(0.0f), 1.0f);
  EXPECT_GT(cpu::exp_f32(-1000.0f), 0.0f);  // clamped, not NaN or garbage
  EXPECT_LT(cpu::exp_f32(-1000.0f), 1e-37f);
}

TEST(VecMath, TanhF32MatchesLibm) {
  double worst = 0;
  for (double x = -20.0; x <= 20.0; x += 0.00071) worst = std::max(worst, std::abs(cpu::tanh_f32(float(x)) - std::tanh(double(float(x)))));
  EXPECT_LT(worst, 2e-7);
  EXPECT_EQ(cpu::tanh_f32(50.0f), 1.0f);
  EXPECT_EQ(cpu::tanh_f32(-50.0f), -1.0f);
}

TEST(ThreadPool, RunsEveryTaskOnce) {
  cpu::set_pool_threads(3);
  std::vector<std::atomic<int>> hits(1000);
  for (int round = 0; round < 20; ++round) cpu::parallel_for(int(hits.size()), [&](int i) { hits[i].fetch_add(1); });
  for (auto& h : hits) EXPECT_EQ(h.load(), 20);
  cpu::set_pool_threads(1);
}

struct TrainRun {
  std::vector<double> losses;
  std::vector<float> grads, params;
};

// Three AdamW steps of a small model (attention and matmuls with several blocks per call).
TrainRun train(int threads) {
  cpu::set_num_threads(threads);
  const GptConfig cfg{.vocab_size = 29, .block_size = 64, .n_layer = 2, .n_head = 2, .n_embd = 64};
  const int B = 6, T = 64;
  GptCpu<float> model(cfg);
  model.params() = init_params(cfg, 3);
  AdamWState<float> opt;
  Batch batch;
  TrainRun r;
  for (int step = 0; step < 3; ++step) {
    batch.tokens.resize(std::size_t(B) * T);
    batch.targets.resize(batch.tokens.size());
    for (std::size_t i = 0; i < batch.tokens.size(); ++i) {
      batch.tokens[i] = std::int32_t((i * 7 + step * 5) % 29);
      batch.targets[i] = std::int32_t((i * 11 + step) % 29);
    }
    r.losses.push_back(train_step(model, opt, AdamWConfig{}, batch, B, T, 1e-3, 1.0).loss);
  }
  r.grads = model.grads();
  r.params = model.params();
  cpu::set_num_threads(1);
  return r;
}

TEST(CpuParallel, ThreadCountDoesNotChangeResults) {
  const TrainRun one = train(1);
  for (int threads : {2, 3}) {
    const TrainRun many = train(threads);
    EXPECT_EQ(one.losses, many.losses) << threads << " threads";
    ASSERT_EQ(one.grads.size(), many.grads.size());
    EXPECT_EQ(0, std::memcmp(one.grads.data(), many.grads.data(), one.grads.size() * sizeof(float)))
        << threads << " threads: gradients differ";
    EXPECT_EQ(0, std::memcmp(one.params.data(), many.params.data(), one.params.size() * sizeof(float)))
        << threads << " threads: parameters after AdamW differ";
  }
}

}  // namespace
}  // namespace wsm::trainer
