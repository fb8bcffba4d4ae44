// `wsm compare sweep` on Hugging Face Trainer folders (tests/hf_trainer_folder.h) with baselines:
// every model the eval command gets (merges, the raw checkpoint, baselines in any form) is a model
// directory as `from_pretrained` reads it, checked by an eval script in Python that loads it the
// way transformers does (config.json, its torch_dtype/dtype against the weights' dtype, generation
// config, tokenizer, the index or model.safetensors, with the safetensors package); a one-checkpoint
// window is not ranked; each merge's difference to each baseline and its verdict against the rule
// written out here; results.csv numbers in shortest form (std::to_chars as the reference); and a
// sweep where nothing scores exits non-zero naming no winner.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/hf_trainer_folder.h"
#include "tests/run_command.h"
#include "wsm/formats/checkpoint.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::run_wsm;

fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("wsm_compare_hf_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// Appended, not "'" + ...: GCC 12 warns -Wrestrict (a false positive) on the literal + string form.
std::string q(const fs::path& p) {
  std::string quoted(1, '\'');
  quoted += p.string();
  quoted += '\'';
  return quoted;
}

Tensor filled(float value) {
  Tensor t{{"model.embed_tokens.weight", DType::f32, {2, 2}}, std::vector<std::byte>(16)};
  const std::vector<float> v(4, value);
  std::memcpy(t.data.data(), v.data(), 16);
  return t;
}

// checkpoint-(100 j) holds x = j^2, j = 1..8 (the newest with a tokenizer); the score |mean - 43.5|
// is 0 for the uniform mean of steps 500..800 alone.
fs::path write_run(const fs::path& root) {
  const fs::path run = root / "run";
  for (int j = 1; j <= 8; ++j) test::write_hf_checkpoint(run, 100 * j, {filled(float(j * j))}, 1e-4, 4096 * j);
  test::write_text(run / "checkpoint-800" / "tokenizer.json", R"({"version": "1.0", "model": {"type": "BPE"}})");
  test::write_text(run / "checkpoint-800" / "tokenizer_config.json", R"({"model_max_length": 128})");
  return run;
}

// Loads PATH as from_pretrained would and prints {"loss": |mean - 43.5|, "stderr": 0.05}; exits
// non-zero naming what a Hugging Face directory lacks.
fs::path write_eval_script(const fs::path& dir, const std::string& extra = "") {
  const fs::path script = dir / "hf_like_eval.py";
  std::ofstream(script) << R"(import json, os, sys
import numpy as np
from safetensors.numpy import load_file
path = sys.argv[1]
)" << extra << R"(if not os.path.isdir(path):
    sys.exit(path + ': not a directory (from_pretrained needs a model directory)')
for need in ('config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'):
    if not os.path.exists(os.path.join(path, need)):
        sys.exit(path + ': no ' + need)
config = json.load(open(os.path.join(path, 'config.json')))
names = {'float32': np.float32, 'float16': np.float16}
index = os.path.join(path, 'model.safetensors.index.json')
files = sorted(set(json.load(open(index))['weight_map'].values())) if os.path.exists(index) else ['model.safetensors']
tensors = {}
for f in files:
    tensors.update(load_file(os.path.join(path, f)))
x = tensors['model.embed_tokens.weight']
for key in ('torch_dtype', 'dtype'):
    if key in config and names.get(config[key]) != x.dtype:
        sys.exit(path + ': config.json says ' + key + '=' + str(config[key]) + ' but the weights are ' + str(x.dtype))
print(json.dumps({'loss': abs(float(x.astype(np.float64).mean()) - 43.5), 'stderr': 0.05}))
)";
  return script;
}

json read_json(const fs::path& p) { return json::parse(test::slurp(p)); }

// The significant digits of a number's text ("0.000120" and "1.2e-04" both "12").
std::string digits(const std::string& text) {
  std::string d;
  for (char c : text.substr(0, text.find_first_of("eE")))
    if (c >= '0' && c <= '9') d += c;
  d.erase(0, d.find_first_not_of('0'));
  d.erase(d.find_last_not_of('0') + 1);
  return d;
}

// A CSV number is exact and no longer than the shortest text that reads back as it (std::to_chars).
void expect_shortest(const std::string& field, double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  EXPECT_EQ(std::stod(field), v) << field;
  EXPECT_EQ(digits(field), digits(std::string(buf, r.ptr))) << field;
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == sep) out.emplace_back();
    else out.back().push_back(c);
  }
  return out;
}

TEST(CompareSweepHf, EveryModelIsADirectoryAndBaselinesGetVerdicts) {
  if (!fs::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
  const fs::path root = temp_dir("sweep");
  const fs::path run = write_run(root);
  // Baselines: a bare safetensors file (converted into a model directory) and a Trainer folder.
  Checkpoint far;
  far.meta.step = 800;
  far.tensors.push_back(filled(43.8f));  // loss 0.3: beyond the noise of a perfect merge
  save_checkpoint(root / "wsd-far.safetensors", far);
  const fs::path near = test::write_hf_checkpoint(root / "wsd-run", 800, {filled(43.55f)}, 0.0, 0);  // loss 0.05
  test::write_text(near / "tokenizer.json", "{}");
  test::write_text(near / "tokenizer_config.json", "{}");

  const fs::path out = root / "out";
  const auto r = run_wsm("compare sweep --shapes linear,1-sqrt --windows 50,200,400 --score-key loss --noise-key stderr "
                         "--baseline far=" + q(root / "wsd-far.safetensors") + " --baseline near=" + q(near) +
                         " --eval-cmd '" + std::string(WSM_PYTHON) + " " + write_eval_script(root).string() +
                         " {path}' --out " + q(out) + " " + q(run) + "/checkpoint-*");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("window 50 steps holds one checkpoint"), std::string::npos) << r.err;

  const json doc = read_json(out / "results.json");
  std::map<std::string, int> count;
  std::map<std::string, json> baseline;
  for (const auto& m : doc.at("results")) {
    const std::string method = m.at("method");
    ++count[method];
    ASSERT_TRUE(m.at("score").is_number()) << m.dump();  // the eval script refused nothing
    EXPECT_EQ(m.at("noise").get<double>(), 0.05);
    const fs::path dir = m.at("path").get<std::string>();
    ASSERT_TRUE(fs::is_directory(dir)) << m.dump();
    if (method == "baseline") baseline[m.at("name")] = m;
    if (method != "wsm") continue;
    EXPECT_NE(m.at("window"), 50) << "a one-checkpoint window was ranked as a merge";
    // Written as Trainer's checkpoint-800: its config with the written dtype, its side files.
    const json config = read_json(dir / "config.json");
    EXPECT_EQ(config.at("torch_dtype"), "float32");
    EXPECT_EQ(config.at("dtype"), "float32");
    EXPECT_EQ(config.at("model_type"), "llama");
    EXPECT_EQ(test::slurp(dir / "tokenizer.json"), test::slurp(run / "checkpoint-800" / "tokenizer.json"));
    EXPECT_TRUE(fs::exists(dir / "generation_config.json"));
  }
  EXPECT_EQ(count["raw"], 1);
  EXPECT_EQ(count["baseline"], 2);
  EXPECT_EQ(count["wsm"], 4);  // 2 shapes x windows 200, 400
  EXPECT_NEAR(baseline.at("far").at("score").get<double>(), 0.3, 1e-5);
  EXPECT_NEAR(baseline.at("near").at("score").get<double>(), 0.05, 1e-5);
  EXPECT_EQ(fs::path(baseline.at("near").at("path").get<std::string>()), fs::absolute(near));  // already a model directory
  EXPECT_EQ(fs::path(baseline.at("far").at("path").get<std::string>()).parent_path(), out / "models");

  // Verdicts: better / worse beyond 2 combined standard errors, else equal within noise.
  const double margin = 2 * std::sqrt(0.05 * 0.05 + 0.05 * 0.05);
  std::size_t compared = 0;
  for (const auto& c : doc.at("baseline_comparisons")) {
    json merge;
    for (const auto& m : doc.at("results"))
      if (m.at("path") == c.at("merge")) merge = m;
    const double d = merge.at("score").get<double>() - baseline.at(c.at("baseline").get<std::string>()).at("score").get<double>();
    EXPECT_NEAR(c.at("difference").get<double>(), d, 1e-12);
    EXPECT_NEAR(c.at("margin").get<double>(), margin, 1e-12);
    EXPECT_EQ(c.at("verdict"), std::abs(d) <= margin ? "equal within noise" : d < 0 ? "better" : "worse") << c.dump();
    ++compared;
  }
  EXPECT_EQ(compared, 4u * 2u);
  const std::string md = test::slurp(out / "report.md");
  EXPECT_NE(md.find("The best merge is the linear merge over 400 steps (4 checkpoints)"), std::string::npos) << md;
  EXPECT_NE(md.find("Against 'far': the best merge, the linear merge over 400 steps (4 checkpoints), is better"),
            std::string::npos) << md;
  EXPECT_NE(md.find("Against 'near': the best merge, the linear merge over 400 steps (4 checkpoints), is equal within noise"),
            std::string::npos) << md;
  EXPECT_NE(md.find("| baseline far |"), std::string::npos) << md;
  for (const char* f : {"score_vs_window.png", "merge_minus_baseline.png", "merge_minus_baseline.svg"})
    EXPECT_TRUE(fs::exists(out / f)) << f;

  // results.csv: every row, the baseline's name, numbers in their shortest exact form.
  std::istringstream csv(test::slurp(out / "results.csv"));
  std::string line;
  std::getline(csv, line);
  const auto header = split(line, ',');
  const auto col = [&](const std::string& name) { return std::size_t(std::find(header.begin(), header.end(), name) - header.begin()); };
  ASSERT_LT(col("name"), header.size());
  std::size_t rows = 0;
  while (std::getline(csv, line)) {
    const auto f = split(line, ',');
    const json& m = doc.at("results").at(rows++);
    EXPECT_EQ(f[col("method")], m.at("method").get<std::string>());
    expect_shortest(f[col("score")], m.at("score").get<double>());
    if (m.at("method") == "baseline") {
      EXPECT_EQ(f[col("name")], m.at("name").get<std::string>());
    }
    if (m.at("method") == "wsm") {
      const auto weights = split(f[col("weights")], ';');
      for (std::size_t j = 0; j < weights.size(); ++j) expect_shortest(weights[j], m.at("weights").at(j).get<double>());
    }
  }
  EXPECT_EQ(rows, doc.at("results").size());
  fs::remove_all(root);
}

TEST(CompareSweepHf, NothingScoredExitsNonZeroAndNamesNoWinner) {
  if (!fs::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
  const fs::path root = temp_dir("none");
  const fs::path run = write_run(root);
  const fs::path out = root / "out";
  const auto r = run_wsm("compare sweep --shapes linear --windows 200,400 --eval-cmd '" + std::string(WSM_PYTHON) + " " +
                         write_eval_script(root, "sys.exit('no GPU here')\n").string() + " {path}' --out " + q(out) + " " +
                         q(run) + "/checkpoint-*");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("no model was scored"), std::string::npos) << r.err;
  const std::string md = test::slurp(out / "report.md");
  EXPECT_NE(md.find("No model was scored: the evaluation failed for 3 of 3 models"), std::string::npos) << md;
  EXPECT_EQ(md.find("The best"), std::string::npos) << md;
  EXPECT_EQ(read_json(out / "results.json").at("summary").size(), 0u);
  fs::remove_all(root);
}

}  // namespace
}  // namespace wsm
