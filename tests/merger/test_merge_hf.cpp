// `wsm merge` on Hugging Face Trainer output folders as transformers lays them out
// (tests/hf_trainer_folder.h): checkpoint-* globs, which the shell sorts as text, merged in step
// order with docs/method-guide.md's weights recomputed here in double; --window-steps over their steps;
// inputs without any step refused where the weights depend on order, and PATH@STEP; --json on
// stdout with the logs on stderr; torch.save inputs named with the converter.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint.h"
#include "tests/hf_trainer_folder.h"
#include "tests/protocol/test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;
using test::run_wsm;

constexpr int kElements = 6;

double value(std::int64_t step, int i) { return std::sin(0.37 * i + double(step) / 1000.0) + double(step) / 500.0; }

Tensor model_at(std::int64_t step) {
  Tensor t{{"model.layers.0.mlp.weight", DType::f32, {2, 3}}, std::vector<std::byte>(kElements * 4)};
  for (int i = 0; i < kElements; ++i) {
    const float v = float(value(step, i));
    std::memcpy(t.data.data() + 4 * i, &v, 4);
  }
  return t;
}

// docs/method-guide.md: w_i = f(i/(k+1)), c_k = w_k, c_j = w_j - w_{j+1}, c_0 = 1 - w_1, f = 1 - sqrt(t).
std::vector<double> one_minus_sqrt_weights(int count) {
  const int k = count - 1;
  std::vector<double> w(count + 1, 0.0), c(count);
  for (int i = 1; i <= k; ++i) w[i] = 1.0 - std::sqrt(double(i) / double(k + 1));
  c[0] = 1.0 - w[1];
  for (int j = 1; j < k; ++j) c[j] = w[j] - w[j + 1];
  c[k] = w[k];
  return c;
}

// Appended, not "'" + ...: GCC 12 warns -Wrestrict (a false positive) on the literal + string form.
std::string q(const fs::path& p) {
  std::string quoted(1, '\'');
  quoted += p.string();
  quoted += '\'';
  return quoted;
}

class MergeHf : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
    for (std::int64_t step : {500, 1000, 1500})
      test::write_hf_checkpoint(dir_ / "out", step, {model_at(step)}, 1e-4 * double(2000 - step) / 2000.0, step * 4096);
  }
  // The glob as a shell expands it: text order, checkpoint-1000 before checkpoint-500.
  std::string glob() const { return q(dir_ / "out") + "/checkpoint-*"; }
  std::vector<double> merged(const fs::path& file) const {
    const Checkpoint c = load_checkpoint(file);
    std::vector<double> v(kElements);
    for (int i = 0; i < kElements; ++i) {
      float x = 0;
      std::memcpy(&x, c.tensors.at(0).data.data() + 4 * i, 4);
      v[i] = x;
    }
    return v;
  }
  test::TempDir dir_;
};

TEST_F(MergeHf, GlobIsMergedInStepOrder) {
  const auto out = dir_ / "m.safetensors";
  const auto r = run_wsm("merge --shape 1-sqrt --out " + q(out) + " " + glob());
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const auto c = one_minus_sqrt_weights(3);  // oldest (step 500) gets the largest weight
  const auto got = merged(out);
  for (int i = 0; i < kElements; ++i) {
    const double want = c[0] * value(500, i) + c[1] * value(1000, i) + c[2] * value(1500, i);
    EXPECT_NEAR(got[i], want, 1e-5 * std::max(1.0, std::abs(want))) << "element " << i;
  }
  EXPECT_EQ(load_checkpoint(out).meta.step, 1500);
  EXPECT_EQ(r.err.find("not every input records its step"), std::string::npos) << r.err;
}

TEST_F(MergeHf, WindowStepsAndJsonPlan) {
  const auto out = dir_ / "w.safetensors";
  const auto r = run_wsm("merge --shape 1-sqrt --window-steps 1000 --json --out " + q(out) + " " + glob());
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(r.out);  // stdout is the JSON document alone
  EXPECT_FALSE(j["dry_run"].get<bool>());
  ASSERT_EQ(j["plan"]["inputs"].size(), 3u);
  EXPECT_EQ(j["plan"]["inputs"][0]["step"], 500);
  EXPECT_EQ(j["plan"]["inputs"][0]["step_source"], "trainer_state.json");
  EXPECT_EQ(j["plan"]["inputs"][0]["tokens"], 500 * 4096);
  EXPECT_FALSE(j["plan"]["inputs"][0]["used"].get<bool>());  // outside (500, 1500]
  const auto& o = j["plan"]["outputs"][0];
  ASSERT_EQ(o["sources"].size(), 2u);
  EXPECT_EQ(o["sources"][0]["step"], 1000);
  EXPECT_EQ(o["sources"][1]["step"], 1500);
  // Sampled at the positions: t = (1500 - 1000) / 1000, w_1 = 1 - sqrt(0.5).
  const double w1 = 1.0 - std::sqrt(0.5);
  EXPECT_NEAR(o["weights"][0].get<double>(), 1.0 - w1, 1e-12);
  EXPECT_NEAR(o["weights"][1].get<double>(), w1, 1e-12);
  EXPECT_GT(j["result"]["bytes_written"].get<double>(), 0);
  const auto got = merged(out);
  for (int i = 0; i < kElements; ++i)
    EXPECT_NEAR(got[i], (1.0 - w1) * value(1000, i) + w1 * value(1500, i), 1e-5) << i;
  EXPECT_NE(r.err.find("merging 2 checkpoints"), std::string::npos) << r.err;  // logs on stderr
}

TEST_F(MergeHf, DryRunJson) {
  const auto r = run_wsm("merge --shape linear,cosine --dry-run --json --out " + q(dir_ / "d") + " " + glob());
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["dry_run"].get<bool>());
  EXPECT_EQ(j["plan"]["outputs"].size(), 2u);
  EXPECT_FALSE(j.contains("result"));
  EXPECT_FALSE(fs::exists(dir_ / "d"));
}

class MergeNoSteps : public MergeHf {
 protected:
  void SetUp() override {
    MergeHf::SetUp();
    fs::create_directories(dir_ / "plain");
    for (auto [name, step] : std::vector<std::pair<std::string, std::int64_t>>{{"a", 300}, {"b", 200}, {"c", 100}}) {
      Checkpoint c;
      c.tensors = {model_at(step)};
      save_checkpoint(dir_ / "plain" / (name + ".safetensors"), c);
    }
  }
  std::string plain(const std::string& name, const std::string& at = "") const {
    return " " + q(dir_ / "plain" / (name + ".safetensors" + at));
  }
};

TEST_F(MergeNoSteps, OrderDependentShapeIsRefused) {
  const auto out = dir_ / "x.safetensors";
  const auto r = run_wsm("merge --shape 1-sqrt --out " + q(out) + plain("a") + plain("b") + plain("c"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("records no step"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("PATH@STEP"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  // --window-steps needs steps too.
  EXPECT_NE(run_wsm("merge --window-steps 100 --out " + q(out) + plain("a") + plain("b")).rc, 0);
}

TEST_F(MergeNoSteps, EqualWeightsNeedNoOrder) {
  const auto out = dir_ / "mean.safetensors";
  const auto r = run_wsm("merge --shape linear --out " + q(out) + plain("a") + plain("b") + plain("c"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto got = merged(out);
  for (int i = 0; i < kElements; ++i)
    EXPECT_NEAR(got[i], (value(100, i) + value(200, i) + value(300, i)) / 3.0, 1e-5) << i;
}

TEST_F(MergeNoSteps, StepsGivenExplicitlyOrderTheInputs) {
  const auto out = dir_ / "given.safetensors";
  const auto r = run_wsm("merge --shape 1-sqrt --out " + q(out) + plain("a", "@300") + plain("b", "@200") +
                         plain("c", "@100"));
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto c = one_minus_sqrt_weights(3);
  const auto got = merged(out);
  for (int i = 0; i < kElements; ++i)
    EXPECT_NEAR(got[i], c[0] * value(100, i) + c[1] * value(200, i) + c[2] * value(300, i), 1e-5) << i;
  EXPECT_EQ(load_checkpoint(out).meta.step, 300);
}

// transformers loads weights in the dtype config.json names: a bf16 merge under the input's
// "torch_dtype": "float32" would load as float32. The safetensors header (read here as bytes and
// JSON, without wsm) says BF16, and config.json says bfloat16 under both names.
TEST_F(MergeHf, DtypeBf16DirectoryConfigSaysBfloat16) {
  const auto out = dir_ / "bf16";
  const auto r = run_wsm("merge --shape linear --dtype bf16 --out " + q(out) + " " + glob());
  ASSERT_EQ(r.rc, 0) << r.err;
  std::ifstream config_file(out / "config.json");
  const auto config = nlohmann::json::parse(config_file);
  EXPECT_EQ(config.at("torch_dtype"), "bfloat16");
  EXPECT_EQ(config.at("dtype"), "bfloat16");
  EXPECT_EQ(config.at("model_type"), "llama");  // the rest as the newest input's
  std::ifstream index_file(out / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(index_file);
  const std::string shard = index.at("weight_map").at("model.layers.0.mlp.weight");
  std::ifstream st(out / shard, std::ios::binary);
  std::uint64_t n = 0;
  st.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  st.read(header.data(), std::streamsize(n));
  EXPECT_EQ(nlohmann::json::parse(header).at("model.layers.0.mlp.weight").at("dtype"), "BF16");
  // The inputs' own config is left as it was.
  std::ifstream input_config(dir_ / "out" / "checkpoint-1500" / "config.json");
  EXPECT_EQ(nlohmann::json::parse(input_config).at("torch_dtype"), "float32");
}

TEST_F(MergeHf, TorchSaveInputIsNamed) {
  const auto ckpt = dir_ / "out" / "checkpoint-500";
  ASSERT_EQ(test::write_torch_files({ckpt}), 0)
      << WSM_PYTHON << " could not run torch.save; tools/install-deps.sh installs python3-torch";
  const auto r = run_wsm("merge --out " + q(dir_ / "t.safetensors") + " " + q(ckpt / "optimizer.pt") + " " +
                         q(dir_ / "out" / "checkpoint-1000"));
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("torch.save zip archive"), std::string::npos) << r.err;
  // The module the message names is one the Python client ships, with a command line of its own.
  const auto named = r.err.find("python -m wsm_client.");
  ASSERT_NE(named, std::string::npos) << r.err;
  const auto start = named + std::strlen("python -m wsm_client.");
  const std::string module = r.err.substr(start, r.err.find(' ', start) - start);
  const fs::path source = fs::path(WSM_SOURCE_DIR) / "protocol/python/wsm_client" / (module + ".py");
  ASSERT_TRUE(fs::exists(source)) << "the error names wsm_client." << module << ", which does not exist: " << r.err;
  std::ifstream in(source);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("if __name__ == \"__main__\""), std::string::npos) << module << " has no command line";
  // The folder holding those files merges as before: its model.safetensors is the model.
  EXPECT_EQ(run_wsm("merge --shape 1-sqrt --out " + q(dir_ / "ok.safetensors") + " " + glob()).rc, 0);
}

}  // namespace
}  // namespace wsm
