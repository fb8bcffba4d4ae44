// The CPU model against PyTorch (tools/torch_gpt.py, run with WSM_PYTHON): same tiny model, same
// weights and tokens -> same loss and gradients, and a few AdamW steps (with clipping and a
// changing LR) -> the same losses. Skips with a message where torch is not installed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "wsm/trainer/data.h"
#include "trainer/step.h"

namespace wsm::trainer {
namespace {

namespace fs = std::filesystem;

template <class V>
void write_raw(const fs::path& p, const V& v) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(v[0])));
}

template <class T>
std::vector<T> read_raw(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

std::vector<double> read_numbers(const fs::path& p) {
  std::ifstream f(p);
  std::vector<double> out;
  double x;
  while (f >> x) out.push_back(x);
  return out;
}

template <class F>
void compare_with_torch(const char* dtype, double grad_tol, double loss_tol) {
  const GptConfig cfg{.vocab_size = 13, .block_size = 16, .n_layer = 2, .n_head = 2, .n_embd = 16};
  const int B = 3, T = 12, steps = 5;
  const double clip = 1.0;
  const std::vector<double> lrs = {1e-3, 5e-3, 1e-2, 1e-2, 5e-3};
  AdamWConfig opt_cfg;

  // A corpus of random tokens; batches come from the same generator the trainer uses.
  std::vector<std::int32_t> data(4000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::int32_t((i * 7 + i / 13) % cfg.vocab_size);
  std::vector<Batch> batches;
  std::vector<std::int32_t> flat_batches;
  for (int s = 0; s < steps; ++s) {
    batches.push_back(batch_at(data, 99, s, B, T));
    flat_batches.insert(flat_batches.end(), batches.back().tokens.begin(), batches.back().tokens.end());
    flat_batches.insert(flat_batches.end(), batches.back().targets.begin(), batches.back().targets.end());
  }

  GptCpu<F> model(cfg);
  auto init = init_params(cfg, 7);
  // non-trivial LayerNorm affine parameters and biases, so their gradients are tested too
  for (std::size_t i = 0; i < init.size(); ++i) model.params()[i] = F(init[i]) + F(0.01 * std::sin(double(i)));

  const fs::path dir = fs::temp_directory_path() / ("wsm_torch_" + std::string(dtype) + "_" + std::to_string(getpid()));
  fs::create_directories(dir);
  write_raw(dir / "params.bin", model.params());
  write_raw(dir / "batches.bin", flat_batches);
  nlohmann::json j = {{"dtype", dtype}, {"B", B}, {"T", T}, {"steps", steps}, {"lrs", lrs}, {"clip", clip},
                      {"weight_decay", opt_cfg.weight_decay},
                      {"model", {{"vocab_size", cfg.vocab_size}, {"block_size", cfg.block_size},
                                 {"n_layer", cfg.n_layer}, {"n_head", cfg.n_head}, {"n_embd", cfg.n_embd}}}};
  std::ofstream(dir / "config.json") << j.dump();

  const std::string cmd = std::string(WSM_PYTHON) + " " + WSM_SOURCE_DIR + "/tests/trainer/torch_ref.py " + dir.string();
  const int rc = std::system(cmd.c_str());
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
    fs::remove_all(dir);
    GTEST_SKIP() << "PyTorch is not importable by " << WSM_PYTHON << "; install python3-torch to run this test";
  }
  ASSERT_EQ(rc, 0) << "torch_ref.py failed: " << cmd;

  // loss and gradients of batch 0
  const double loss = model.forward(batches[0].tokens, batches[0].targets, B, T);
  model.zero_grad();
  model.backward();
  const double torch_loss = read_numbers(dir / "loss0.txt").at(0);
  EXPECT_NEAR(loss, torch_loss, loss_tol * std::abs(torch_loss));
  const auto torch_grads = read_raw<F>(dir / "grads.bin");
  ASSERT_EQ(torch_grads.size(), model.grads().size());
  for (const auto& spec : param_layout(cfg)) {
    double diff = 0, ref = 0, worst = 0;
    for (std::size_t i = spec.offset; i < spec.offset + spec.numel; ++i) {
      const double a = model.grads()[i], b = torch_grads[i];
      diff += (a - b) * (a - b);
      ref += b * b;
      worst = std::max(worst, std::abs(a - b));
    }
    ASSERT_GT(ref, 0) << spec.name << " has an all-zero torch gradient: the test would prove nothing";
    EXPECT_LT(std::sqrt(diff / ref), grad_tol) << spec.name << " (max abs diff " << worst << ")";
  }

  // a few AdamW steps from the same start
  AdamWState<F> opt;
  const auto torch_losses = read_numbers(dir / "losses.txt");
  ASSERT_EQ(torch_losses.size(), std::size_t(steps));
  for (int s = 0; s < steps; ++s) {
    const auto r = train_step(model, opt, opt_cfg, batches[std::size_t(s)], B, T, lrs[std::size_t(s)], clip);
    EXPECT_NEAR(r.loss, torch_losses[std::size_t(s)], loss_tol * std::abs(torch_losses[std::size_t(s)]))
        << "step " << s;
  }
  EXPECT_LT(torch_losses.back(), torch_losses.front()) << "training did not move the loss";
  fs::remove_all(dir);
}

TEST(AgainstTorch, Float32LossGradsAndAdamW) { compare_with_torch<float>("f32", 1e-4, 1e-5); }
TEST(AgainstTorch, Float64LossGradsAndAdamW) { compare_with_torch<double>("f64", 1e-10, 1e-12); }

}  // namespace
}  // namespace wsm::trainer
