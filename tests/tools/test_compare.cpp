// `wsm compare`: study mode on the tiny preset (every number checked against `wsm eval` of the file
// it names, merge weights against docs/method-guide.md's formula, resumption), sweep mode with an eval command
// on synthetic checkpoints whose best merge is known in closed form, a failing eval command, and the
// small pieces (score parsing, statistics).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint.h"
#include "tests/run_command.h"
#include "tests/synthetic_text.h"
#include "tools/compare/scoring.h"
#include "tools/compare/stats.h"

namespace wsm::tools::compare {
namespace {
namespace fs = std::filesystem;
using test::synthetic_text;
using nlohmann::json;
using test::run_wsm;

fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("wsm_compare_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

// docs/method-guide.md: w_i = f(i/(k+1)), c_k = w_k, c_j = w_j - w_{j+1}, c_0 = 1 - w_1; in double, written
// out here independently of schedules/.
std::vector<double> one_minus_sqrt_weights(int count) {
  const int k = count - 1;
  std::vector<double> w(k + 2, 0.0), c(count);
  for (int i = 1; i <= k; ++i) w[i] = 1 - std::sqrt(double(i) / double(k + 1));
  c[0] = 1 - w[1];
  for (int j = 1; j <= k; ++j) c[j] = w[j] - w[j + 1];
  return c;
}

TEST(CompareStudy, TinyStudyMatchesWsmEvalAndResumes) {
  const fs::path root = temp_dir("study");
  std::ofstream(root / "train.txt") << synthetic_text(20000);
  std::ofstream(root / "val.txt") << synthetic_text(4000).substr(1000);
  const fs::path out = root / "study";
  const std::string args = "compare study --preset tiny --steps 60 --every 5 --seeds 2 --durations 10,20 "
                           "--shapes linear,1-sqrt --eval-positions 2048 --data '" + (root / "train.txt").string() +
                           "' --val '" + (root / "val.txt").string() + "' --out '" + out.string() + "'";
  const auto r = run_wsm(args);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("WSM - WSD"), std::string::npos) << r.out;

  const json doc = read_json(out / "results.json");
  EXPECT_EQ(doc.at("mode"), "study");
  const auto& results = doc.at("results");
  int raw = 0, wsd = 0, wsm = 0;
  std::string finals;
  for (const auto& m : results) {
    ASSERT_TRUE(m.at("score").is_number()) << m.dump();
    ASSERT_TRUE(fs::exists(m.at("path").get<std::string>())) << m.dump();
    if (m.at("final").get<bool>()) finals += " '" + m.at("path").get<std::string>() + "'";
    const std::string method = m.at("method");
    raw += method == "raw" && m.at("final").get<bool>();
    wsd += method == "wsd" && m.at("final").get<bool>();
    if (method != "wsm") continue;
    ++wsm;
    // Sources: the trunk's checkpoints in (60 - W, 60]; weights: docs/method-guide.md's.
    const std::int64_t w = m.at("window");
    const auto sources = m.at("sources").get<std::vector<std::int64_t>>();
    const auto weights = m.at("weights").get<std::vector<double>>();
    ASSERT_EQ(std::int64_t(sources.size()), w / 5);
    EXPECT_EQ(sources.front(), 60 - w + 5);
    EXPECT_EQ(sources.back(), 60);
    const auto expected = m.at("shape") == "linear" ? std::vector<double>(sources.size(), 1.0 / double(sources.size()))
                                                    : one_minus_sqrt_weights(int(sources.size()));
    for (std::size_t j = 0; j < weights.size(); ++j) EXPECT_NEAR(weights[j], expected[j], 1e-12) << m.dump();
  }
  EXPECT_EQ(raw, 2);        // one trunk per seed, at step 60
  EXPECT_EQ(wsd, 2 * 2 * 2);  // seeds x durations x shapes
  EXPECT_EQ(wsm, 2 * 2 * 2);  // seeds x windows {10, 20} x shapes (D/4, D/2 are shorter than 2 checkpoints)
  ASSERT_EQ(doc.at("summary").size(), 4u);  // shapes x durations
  for (const auto& cell : doc.at("summary")) {
    EXPECT_EQ(cell.at("seeds").size(), 2u);
    ASSERT_TRUE(cell.at("wsm_minus_wsd").at("ci95").is_array());
  }

  // The numbers are exactly what `wsm eval` gives for those files.
  const auto ev = run_wsm("eval --json --positions 2048 --val '" + (root / "val.txt").string() + "'" + finals);
  ASSERT_EQ(ev.rc, 0) << ev.err;
  std::map<std::string, double> by_path;
  for (const auto& e : json::parse(ev.out)) by_path[e.at("checkpoint")] = e.at("val_loss");
  for (const auto& m : results)
    if (m.at("final").get<bool>()) {
      EXPECT_EQ(m.at("score").get<double>(), by_path.at(m.at("path"))) << m.dump();
    }

  // The report and its pictures.
  for (const char* f : {"report.md", "results.csv", "loss_vs_step.png", "loss_vs_step.svg", "wsm_vs_wsd.png",
                        "wsm_vs_wsd.svg", "lr.png", "lr.svg", "weights.png", "weights.svg"})
    EXPECT_TRUE(fs::exists(out / f)) << f;
  const std::string csv = test::slurp(out / "results.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), std::ptrdiff_t(results.size()) + 1);
  const std::string md = test::slurp(out / "report.md");
  for (const char* s : {"## Question", "## Verdict", "## Regime", "tokens per parameter", "## How it was run", "compare study"})
    EXPECT_NE(md.find(s), std::string::npos) << s;

  // Re-running the same command trains nothing again and gives the same results.
  const auto trunk_ckpt = out / "runs" / "seed1" / "trunk" / "step_000000000060.h5";
  const auto before = fs::last_write_time(trunk_ckpt);
  const auto again = run_wsm(args);
  ASSERT_EQ(again.rc, 0) << again.err;
  EXPECT_EQ(fs::last_write_time(trunk_ckpt), before);
  const json again_doc = read_json(out / "results.json");
  EXPECT_EQ(again_doc.at("results"), results);
  // The training time is the runs' own (from done.json), not this invocation's, which trained nothing.
  const json& training = again_doc.at("training");
  EXPECT_EQ(training.at("runs_timed"), training.at("runs"));
  EXPECT_GT(training.at("runs").get<int>(), 1);
  EXPECT_EQ(training.at("seconds"), doc.at("training").at("seconds"));
  EXPECT_GT(training.at("seconds").get<double>(), 0.0);
  EXPECT_NE(test::slurp(out / "report.md").find("the sum of"), std::string::npos);

  // The same directory with another run length or interval is refused rather than mixed.
  const auto other = run_wsm("compare study --preset tiny --steps 60 --every 10 --seeds 1 --durations 20 "
                             "--data '" + (root / "train.txt").string() + "' --out '" + out.string() + "'");
  EXPECT_NE(other.rc, 0);
  EXPECT_NE(other.err.find("another preset, --steps, --every"), std::string::npos) << other.err;
  fs::remove_all(root);
}

// Checkpoint j (step 100 j) holds x = j^2; the eval command scores |mean(x) - 43.5|, which is 0 for
// exactly one merge: the uniform mean of steps 500..800 (linear over a 400-step window).
void write_sweep_inputs(const fs::path& dir) {
  for (int j = 1; j <= 8; ++j) {
    Checkpoint c;
    c.meta.step = 100 * j;
    Tensor t;
    t.info = {"x", DType::f32, {4}};
    const std::vector<float> v(4, float(j * j));
    t.data.resize(16);
    std::memcpy(t.data.data(), v.data(), 16);
    c.tensors.push_back(std::move(t));
    save_checkpoint(dir / ("ckpt-" + std::to_string(100 * j) + ".safetensors"), c);
  }
}

fs::path write_eval_script(const fs::path& dir, const std::string& extra) {
  const fs::path script = dir / "eval.py";
  std::ofstream(script) << "import json, struct, sys\nimport numpy as np\npath = sys.argv[1]\n" << extra
                        << "raw = open(path, 'rb').read()\nn = struct.unpack('<Q', raw[:8])[0]\n"
                           "header = json.loads(raw[8:8 + n])\nbegin, end = header['x']['data_offsets']\n"
                           "x = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=np.float32)\n"
                           "print('loading', path)\nprint('score:', abs(float(x.mean()) - 43.5))\n";
  return script;
}

TEST(CompareSweep, EvalCommandFindsTheKnownBestMerge) {
  const fs::path root = temp_dir("sweep");
  write_sweep_inputs(root);
  const fs::path script = write_eval_script(root, "");
  std::string inputs;
  for (int j = 8; j >= 1; --j) inputs += " '" + (root / ("ckpt-" + std::to_string(100 * j) + ".safetensors")).string() + "'";
  const auto r = run_wsm("compare sweep --shapes linear,1-sqrt --windows 200,400,800 --jobs 2 --eval-cmd '" +
                         std::string(WSM_PYTHON) + " " + script.string() + " {path}' --out '" + (root / "out").string() + "'" + inputs);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  const json doc = read_json(root / "out" / "results.json");
  ASSERT_EQ(doc.at("results").size(), 1u + 2 * 3);  // newest raw + shapes x windows
  for (const auto& m : doc.at("results")) {
    const double score = m.at("score");
    if (m.at("method") == "raw") {
      EXPECT_NEAR(score, 64 - 43.5, 1e-5);
      continue;
    }
    const std::int64_t w = m.at("window");
    const int count = int(w / 100);
    const auto c = m.at("shape") == "linear" ? std::vector<double>(count, 1.0 / count) : one_minus_sqrt_weights(count);
    double mean = 0;
    for (int j = 0; j < count; ++j) mean += c[j] * double((9 - count + j) * (9 - count + j));
    EXPECT_NEAR(score, std::abs(mean - 43.5), 1e-4) << m.dump();
  }
  const auto& best = doc.at("summary").at(0);
  EXPECT_NEAR(best.at("score").get<double>(), 0.0, 1e-5);
  EXPECT_EQ(fs::path(best.at("path").get<std::string>()).filename(), "linear_w400.safetensors");
  EXPECT_NE(test::slurp(root / "out" / "report.md").find("The best merge is the linear merge over 400 steps (4 checkpoints)"),
            std::string::npos);

  // --keep best: the other merged models are deleted once scored.
  const auto k = run_wsm("compare sweep --shapes linear,1-sqrt --windows 200,400 --keep best --eval-cmd '" +
                         std::string(WSM_PYTHON) + " " + script.string() + " {path}' --out '" + (root / "keep").string() + "'" + inputs);
  ASSERT_EQ(k.rc, 0) << k.err;
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(root / "keep" / "models")) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"linear_w400.safetensors"});
  fs::remove_all(root);
}

TEST(CompareSweep, FailingEvalCommandNamesTheModelAndKeepsTheRest) {
  const fs::path root = temp_dir("sweep_bad");
  write_sweep_inputs(root);
  const fs::path script = write_eval_script(
      root, "if 'cosine' in path:\n    sys.exit('cannot load ' + path)\nif 'w200' in path:\n    print('no score')\n    sys.exit(0)\n");
  std::string inputs;
  for (int j = 1; j <= 8; ++j) inputs += " '" + (root / ("ckpt-" + std::to_string(100 * j) + ".safetensors")).string() + "'";
  const auto r = run_wsm("compare sweep --shapes linear,cosine --windows 200,400 --eval-cmd '" + std::string(WSM_PYTHON) +
                         " " + script.string() + " {path}' --out '" + (root / "out").string() + "'" + inputs);
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("could not be scored"), std::string::npos) << r.err;
  const json doc = read_json(root / "out" / "results.json");
  int scored = 0;
  for (const auto& m : doc.at("results")) {
    const std::string path = m.at("path");
    if (path.find("cosine") != std::string::npos) {
      EXPECT_TRUE(m.at("score").is_null());
      EXPECT_NE(m.at("error").get<std::string>().find("eval command failed for " + path), std::string::npos) << m.dump();
      EXPECT_NE(m.at("error").get<std::string>().find("cannot load"), std::string::npos) << m.dump();
    } else if (path.find("w200") != std::string::npos) {
      EXPECT_TRUE(m.at("score").is_null());
      EXPECT_NE(m.at("error").get<std::string>().find("printed no number for " + path), std::string::npos) << m.dump();
    } else {
      EXPECT_TRUE(m.at("score").is_number()) << m.dump();
      ++scored;
    }
  }
  EXPECT_EQ(scored, 2);  // the newest raw checkpoint and linear over 400 steps
  EXPECT_NEAR(doc.at("summary").at(0).at("score").get<double>(), 0.0, 1e-5);
  fs::remove_all(root);
}

TEST(CompareScore, ParsesLastNumberOrJsonKey) {
  EXPECT_EQ(parse_score("epoch 3\nloss 2.5e-1\n", ""), 0.25);
  EXPECT_EQ(parse_score("accuracy: 71.25%\n", ""), 71.25);
  EXPECT_FALSE(parse_score("nothing here\n", "").has_value());
  EXPECT_EQ(parse_score("log line 7\n{\"acc\": 0.5, \"n\": 100}\n", "acc"), 0.5);
  EXPECT_FALSE(parse_score("{\"n\": 100}\n", "acc").has_value());
  EXPECT_EQ(substitute_path("eval {path} --again {path}", "/tmp/it's"), "eval '/tmp/it'\\''s' --again '/tmp/it'\\''s'");
}

TEST(CompareStats, StudentIntervalOfTheMean) {
  const std::vector<double> v{1, 2, 3};
  const Summary s = summarize(v);
  EXPECT_DOUBLE_EQ(s.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.sd, 1.0);
  EXPECT_NEAR(s.half_ci, 4.303 / std::sqrt(3.0), 1e-12);  // t(0.975, 2) = 4.303
  EXPECT_TRUE(std::isinf(summarize(std::vector<double>{5}).half_ci));
  EXPECT_EQ(t_quantile_975(1000), 1.960);
}

}  // namespace
}  // namespace wsm::tools::compare
