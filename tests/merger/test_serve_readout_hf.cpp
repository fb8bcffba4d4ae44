// The readout with Hugging Face outputs (issue 22): `wsm serve --format hf` with no --hf-template
// writes config.json from the run's "hf.config" metadata (dtype as written); raw checkpoints reach
// the eval command as model directories too (the script, numpy + the safetensors package, refuses
// anything else), so `wsm report` has its raw line; index.json names each output relative to --out
// ("file") and the best output of each step ("best", checked against the scores listed), `wsm
// status` the best emulation, and --publish-best keeps OUT/<run>/best at the best of the newest
// step. Then a run whose eval command failed throughout is rescored by `wsm report --rescore`.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serve_test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::int64_t kRows = 16, kCols = 8;
const std::string kHfConfig = R"({"model_type": "gpt2", "n_embd": 8, "torch_dtype": "bfloat16"})";

double tensor_sum(std::int64_t step) {
  double s = 0;
  for (std::uint64_t i = 0; i < std::uint64_t(kRows * kCols); ++i) s += double(test::tensor_value(0, step, i));
  return s;
}

json read_index(const fs::path& out) {
  std::ifstream in(out / "index.json");
  if (!in) return {};
  return json::parse(in, nullptr, false);
}

void send_step(const std::string& endpoint, std::int64_t step) {
  ClientOptions co;
  co.endpoint = endpoint;
  co.run_id = "ev";
  co.metadata = {{"hf.config", kHfConfig}};
  MergerClient client(co);
  auto model = test::make_model(step, {{kRows, kCols}});
  client.send_checkpoint(step, step * 10, 1e-3, test::views(model));
  client.flush();
}

// Prints the f64 sum of layer0.weight of a model directory as from_pretrained reads it.
fs::path write_script(const fs::path& dir) {
  const fs::path script = dir / "hf_sum.py";
  std::ofstream(script) << R"(import json, os, sys
import numpy as np
from safetensors.numpy import load_file
path = sys.argv[1]
if not os.path.isdir(path):
    sys.exit(path + ': not a model directory')
config = json.load(open(os.path.join(path, 'config.json')))
index = json.load(open(os.path.join(path, 'model.safetensors.index.json')))
t = {}
for f in sorted(set(index['weight_map'].values())):
    t.update(load_file(os.path.join(path, f)))
x = t['layer0.weight']
if config['torch_dtype'] != 'float32' or config['dtype'] != 'float32' or x.dtype != np.float32:
    sys.exit(path + ': dtype mismatch')
print(float(x.astype(np.float64).sum()))
)";
  return script;
}

// Whether every output and raw checkpoint of `step` has an eval record.
bool all_evaluated(const fs::path& out, std::int64_t step, std::size_t outputs) {
  const auto idx = read_index(out);
  if (!idx.is_object() || !idx.contains("raw")) return false;
  std::size_t n = 0, raw = 0;
  for (const auto& r : idx["outputs"]) n += r["step"] == step && r.contains("eval");
  for (const auto& r : idx["raw"]) raw += r["step"] == step && r.contains("eval");
  return n == outputs && raw == 1;
}

// index.json's "best" against the scores it lists: per step, the lowest.
void expect_best_matches_scores(const json& idx) {
  std::map<std::int64_t, std::pair<double, std::string>> lowest;
  for (const auto& r : idx["outputs"]) {
    if (!r["eval"].contains("score")) continue;
    const std::int64_t step = r["step"];
    const double s = r["eval"]["score"];
    if (!lowest.contains(step) || s < lowest[step].first) lowest[step] = {s, r["label"]};
  }
  ASSERT_EQ(idx["best"].size(), lowest.size()) << idx["best"].dump();
  for (const auto& b : idx["best"]) {
    EXPECT_EQ(b["label"], lowest.at(b["step"]).second) << b.dump();
    EXPECT_EQ(b["score"].get<double>(), lowest.at(b["step"]).first);
  }
}

class ServeReadoutHf : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
    dir_ = test::temp_dir("readout-hf");
    endpoint_ = test::free_loopback_endpoint();
  }
  void TearDown() override {
    if (pid_ > 0) test::stop_wsm_serve(pid_);
  }
  pid_t start(const fs::path& out, const std::string& eval_cmd, bool publish) {
    std::vector<std::string> args = {"--out", out.string(), "--emulate", "linear:200,1-sqrt:300", "--every", "100",
                                     "--format", "hf", "--store", (dir_ / "store").string(), "--eval-cmd", eval_cmd};
    if (publish) args.push_back("--publish-best");
    return pid_ = test::spawn_wsm_serve(dir_, endpoint_, args);
  }
  fs::path dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
};

TEST_F(ServeReadoutHf, RawScoredAsModelDirectoriesBestNamedAndPublished) {
  const fs::path out = dir_ / "out";
  ASSERT_GT(start(out, std::string(WSM_PYTHON) + " " + write_script(dir_).string() + " {path}", true), 0);
  for (std::int64_t step = 100; step <= 500; step += 100) {
    send_step(endpoint_, step);
    if (step < 200) continue;
    const std::size_t outputs = step < 300 ? 1 : 2;  // 1-sqrt over 300 steps is covered from 300 (100, 200, 300)
    ASSERT_TRUE(test::wait_for([&] { return all_evaluated(out, step, outputs); }, 30000))
        << "step " << step << ": " << read_index(out).dump(1) << test::slurp(dir_ / "serve.log");
  }
  const json idx = read_index(out);
  for (const auto& r : idx["outputs"]) {
    ASSERT_TRUE(r["eval"].contains("score")) << r.dump();
    EXPECT_EQ(fs::path(r["path"].get<std::string>()), out / r["file"].get<std::string>());
    EXPECT_TRUE(fs::path(r["file"].get<std::string>()).is_relative());
    json expected = json::parse(kHfConfig);
    expected["torch_dtype"] = expected["dtype"] = "float32";
    EXPECT_EQ(json::parse(test::slurp(fs::path(r["path"].get<std::string>()) / "config.json")), expected);
  }
  for (const auto& r : idx["raw"]) {
    ASSERT_TRUE(r["eval"].contains("score")) << r.dump();
    EXPECT_NEAR(r["eval"]["score"].get<double>(), tensor_sum(r["step"]), 1e-9 * kRows * kCols) << r.dump();
  }
  expect_best_matches_scores(idx);

  // OUT/ev/best is a link to the best output of step 500.
  json best500;
  for (const auto& b : idx["best"])
    if (b["step"] == 500) best500 = b;
  ASSERT_FALSE(best500.is_null());
  const fs::path link = out / "ev" / "best";
  ASSERT_TRUE(test::wait_for([&] {
    std::error_code ec;
    return fs::is_symlink(link) && fs::equivalent(link, best500["path"].get<std::string>(), ec);
  })) << test::slurp(dir_ / "serve.log");
  EXPECT_TRUE(fs::read_symlink(link).is_relative());
  EXPECT_TRUE(fs::exists(link / "config.json"));

  const auto st = test::run_command(test::wsm_binary().string() + " status --connect " + endpoint_);
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_NE(st.out.find("best emulation of run ev at step 500: " + best500["label"].get<std::string>()), std::string::npos)
      << st.out;
  EXPECT_TRUE(test::stop_wsm_serve(pid_));
  pid_ = -1;
  const auto rep = test::run_wsm("report --json '" + out.string() + "'");
  ASSERT_EQ(rep.rc, 0) << rep.err;
  bool raw_line = false;
  const json report = json::parse(rep.out);  // named: a range-for over parse(...)["curves"] dangles
  for (const auto& c : report["curves"]) raw_line |= c["label"] == "raw" && c["scored"] == 4;  // 200..500
  EXPECT_TRUE(raw_line) << rep.out;
}

TEST_F(ServeReadoutHf, ReportRescoreScoresWhatFailedAndRewritesTheIndex) {
  const fs::path out = dir_ / "out";
  ASSERT_GT(start(out, "exit 3", false), 0);
  for (std::int64_t step = 100; step <= 400; step += 100) {
    send_step(endpoint_, step);
    if (step < 200) continue;
    ASSERT_TRUE(test::wait_for([&] { return all_evaluated(out, step, step < 300 ? 1 : 2); }, 30000))
        << read_index(out).dump(1);
  }
  EXPECT_TRUE(test::stop_wsm_serve(pid_));
  pid_ = -1;
  const json unscored = read_index(out);  // named: a range-for over read_index(...)["outputs"] dangles
  for (const auto& r : unscored["outputs"]) ASSERT_FALSE(r["eval"].contains("score")) << r.dump();
  // Before: `wsm report` has the raw line, with its failures.
  const auto before = test::run_wsm("report --json '" + out.string() + "'");
  EXPECT_NE(before.rc, 0);  // nothing scored yet

  const auto r = test::run_wsm("report '" + out.string() + "' --rescore --store '" + (dir_ / "store").string() +
                               "' --eval-cmd '" + std::string(WSM_PYTHON) + " " + write_script(dir_).string() + " {path}'");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("rescore: 8 scored, 0 failed"), std::string::npos) << r.err;  // 5 outputs, raw of 200..400
  const json idx = read_index(out);
  for (const auto& o : idx["outputs"]) EXPECT_TRUE(o["eval"]["rescored"].get<bool>()) << o.dump();
  for (const auto& raw : idx["raw"]) {
    ASSERT_TRUE(raw["eval"].contains("score")) << raw.dump();
    EXPECT_NEAR(raw["eval"]["score"].get<double>(), tensor_sum(raw["step"]), 1e-9 * kRows * kCols);
  }
  expect_best_matches_scores(idx);
  EXPECT_NE(r.out.find("raw"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out / ".rescore-scratch"));
}

}  // namespace
}  // namespace wsm
