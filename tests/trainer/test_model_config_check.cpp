// Issue 23, item 5: `wsm serve --eval-builtin` (and `wsm eval`) build the model a checkpoint's
// metadata describes. A peer's metadata claiming 200,000 layers over a 16-byte checkpoint made the
// evaluator allocate 1.2 GB before noticing the tensors were missing. The config is now checked
// against the file's tensors (count, names, shapes) before anything of the model's size exists.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/protocol/test_util.h"
#include "wsm/core/error.h"
#include "wsm/trainer/checkpoint_io.h"

namespace wsm::trainer {
namespace {

// Peak resident set of this process so far, in MiB (VmHWM).
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

Checkpoint claimed_model(int n_layer, int n_embd) {
  Checkpoint c;
  c.meta.extra = {{"model.arch", "gpt"},        {"model.vocab_size", "4"}, {"model.block_size", "8"},
                  {"model.n_layer", std::to_string(n_layer)}, {"model.n_head", "1"},
                  {"model.n_embd", std::to_string(n_embd)}, {std::string(kVocabKey), "61626364"}};
  c.tensors.push_back(test::random_tensor("wte", DType::f32, {2, 2}, 1));  // 16 bytes
  return c;
}

std::string load_error(const std::filesystem::path& p, const ModelFile* fallback = nullptr) {
  try {
    load_model(p, fallback);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfigCheck, HugeClaimedModelIsRefusedBeforeAllocating) {
  test::TempDir dir;
  const auto file = dir / "claims.h5";
  save_checkpoint(file, claimed_model(200000, 8));
  const double before = peak_rss_mib();
  const std::string error = load_error(file);
  const double grew = peak_rss_mib() - before;
  EXPECT_NE(error.find("claims.h5"), std::string::npos) << error;
  EXPECT_NE(error.find("200000"), std::string::npos) << error;  // names the claim
  EXPECT_LT(grew, 64.0) << "MiB allocated for a 16-byte checkpoint: " << error;
}

TEST(ModelConfigCheck, ConfigMustMatchEveryTensor) {
  test::TempDir dir;
  // A real 1-layer model: loads; the same tensors with a config of 2 layers or another width do not.
  const GptConfig cfg{.vocab_size = 4, .block_size = 8, .n_layer = 1, .n_head = 2, .n_embd = 4};
  Vocab vocab = Vocab::from_hex("61626364", "test");
  std::vector<float> params(num_params(cfg), 0.5f);
  save_model(dir / "ok.h5", cfg, vocab, params, {});
  const ModelFile m = load_model(dir / "ok.h5");
  EXPECT_EQ(m.config, cfg);
  EXPECT_EQ(m.params, params);

  Checkpoint ck = load_checkpoint(dir / "ok.h5");
  ck.meta.extra["model.n_layer"] = "2";
  save_checkpoint(dir / "two_layers.h5", ck);
  EXPECT_NE(load_error(dir / "two_layers.h5").find("model.n_layer"), std::string::npos)
      << load_error(dir / "two_layers.h5");
  ck.meta.extra["model.n_layer"] = "1";
  ck.meta.extra["model.n_embd"] = "8";
  save_checkpoint(dir / "wider.h5", ck);
  EXPECT_NE(load_error(dir / "wider.h5").find("shape"), std::string::npos) << load_error(dir / "wider.h5");
  ck.meta.extra["model.n_embd"] = "-4";
  ck.meta.extra["model.n_head"] = "2";
  save_checkpoint(dir / "negative.h5", ck);
  EXPECT_NE(load_error(dir / "negative.h5").find("inconsistent model config"), std::string::npos)
      << load_error(dir / "negative.h5");

  // A file without config takes the reference's, and is checked against it the same way.
  Checkpoint bare;
  bare.tensors.push_back(test::random_tensor("wte", DType::f32, {2, 2}, 2));
  save_checkpoint(dir / "bare.h5", bare);
  const ModelFile huge{.config = {.vocab_size = 4, .block_size = 8, .n_layer = 200000, .n_head = 1, .n_embd = 8},
                       .vocab = vocab, .params = {}, .meta = {}};
  const double before = peak_rss_mib();
  EXPECT_NE(load_error(dir / "bare.h5", &huge).find("bare.h5"), std::string::npos);
  EXPECT_LT(peak_rss_mib() - before, 64.0);
}

}  // namespace
}  // namespace wsm::trainer
