// The stable-phase readout: `wsm serve --eval-cmd` scores every merged output and the newest raw
// checkpoint of each emission in the background. The scores in index.json and `wsm status` are
// checked against the sum of the merged tensor computed here in double from docs/method-guide.md's weights;
// a failing eval command is recorded and the daemon serves on; a slow one never holds up ingest;
// `wsm report` draws the scores as PNG and SVG.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serve_test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;

constexpr std::int64_t kRows = 64, kCols = 32;

// What the eval script prints: the sum of layer0.weight, read with h5py, in float64.
double tensor_sum(std::int64_t step) {
  double s = 0;
  for (std::uint64_t i = 0; i < std::uint64_t(kRows * kCols); ++i) s += double(test::tensor_value(0, step, i));
  return s;
}

nlohmann::json read_index(const fs::path& out) {
  std::ifstream in(out / "index.json");
  if (!in) return {};
  return nlohmann::json::parse(in, nullptr, false);
}

void send_steps(const std::string& endpoint, const std::string& run, std::int64_t from, std::int64_t to) {
  ClientOptions co;
  co.endpoint = endpoint;
  co.run_id = run;
  MergerClient client(co);
  for (std::int64_t step = from; step <= to; step += 100) {
    auto model = test::make_model(step, {{kRows, kCols}});
    client.send_checkpoint(step, step * 10, 1e-3, test::views(model));
  }
  client.flush();
}

class ServeEval : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
    dir_ = test::temp_dir("eval");
    endpoint_ = test::free_loopback_endpoint();
  }
  void TearDown() override {
    if (pid_ > 0) test::stop_wsm_serve(pid_);
  }
  fs::path dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
};

TEST_F(ServeEval, OutputsAndRawCheckpointsAreScored) {
  const fs::path script = dir_ / "score.py";
  std::ofstream(script) << "import sys, h5py, numpy as np\n"
                           "path = sys.argv[1]\n"
                           "if 'cosine' in path:\n"
                           "    sys.exit('no cosine today')\n"
                           "with h5py.File(path, 'r') as f:\n"
                           "    t = np.asarray(f['tensors']['layer0.weight'][()], dtype=np.float64)\n"
                           "print('step', 1, 'sum', float(t.sum()))\n";
  const fs::path out = dir_ / "out";
  pid_ = test::spawn_wsm_serve(dir_, endpoint_,
                               {"--out", out.string(), "--emulate", "linear:200,cosine:200", "--every", "100", "--store",
                                (dir_ / "store").string(), "--eval-cmd",
                                std::string(WSM_PYTHON) + " " + script.string() + " {path}"});
  ASSERT_GT(pid_, 0);
  // How many of step's two outputs and its raw checkpoint index.json shows evaluated (or failed).
  const auto scored_at = [&](std::int64_t step) {
    const auto idx = read_index(out);
    if (!idx.is_object()) return 0;
    int scored = 0;
    for (const auto& r : idx["outputs"]) scored += r["step"] == step && r.contains("eval");
    if (idx.contains("raw"))
      for (const auto& r : idx["raw"]) scored += r["step"] == step && r.contains("eval");
    return scored;
  };
  // One checkpoint at a time, each emission written and scored before the next is sent: a newer
  // window supersedes a queued output (emission_worker.h) and a newer raw checkpoint a raw one
  // not yet scored, and this test wants every emission scored.
  for (std::int64_t step = 100; step <= 500; step += 100) {
    send_steps(endpoint_, "ev", step, step);
    if (step < 200) continue;
    ASSERT_TRUE(test::wait_for([&] { return scored_at(step) == 3; }, 20000))
        << "outputs and raw checkpoint of step " << step << " not all scored";
  }

  // Every output and one raw checkpoint per emission step end up scored (or failed) in index.json.
  nlohmann::json idx;
  ASSERT_TRUE(test::wait_for(
      [&] {
        idx = read_index(out);
        if (!idx.is_object() || idx["outputs"].size() < 6 || !idx.contains("raw") || idx["raw"].size() < 3) return false;
        for (const auto& r : idx["outputs"])
          if (!r.contains("eval")) return false;
        return true;
      },
      60000))
      << idx.dump(1) << test::slurp(dir_ / "serve.log");

  std::set<std::int64_t> emission_steps;
  for (const auto& r : idx["outputs"]) {
    const std::int64_t step = r["step"];
    emission_steps.insert(step);
    const auto& ev = r["eval"];
    EXPECT_NE(ev["evaluator"].get<std::string>().find("score.py"), std::string::npos);
    if (r["label"] == "cosine_w200") {
      EXPECT_FALSE(ev.contains("score"));
      EXPECT_NE(ev["error"].get<std::string>().find("no cosine today"), std::string::npos) << ev.dump();
      continue;
    }
    ASSERT_EQ(r["label"], "linear_w200");
    // docs/method-guide.md, linear over k+1 = 2 checkpoints (window 200, every 100): c = (1/2, 1/2).
    const double want = 0.5 * tensor_sum(step - 100) + 0.5 * tensor_sum(step);
    ASSERT_TRUE(ev.contains("score")) << ev.dump();
    EXPECT_NEAR(ev["score"].get<double>(), want, 1e-6 * kRows * kCols) << "step " << step;
  }
  // Covered from step 200 on (window_covered): 100 and 200 fill the window (0, 200].
  EXPECT_EQ(emission_steps, (std::set<std::int64_t>{200, 300, 400, 500}));
  std::set<std::int64_t> raw_steps;
  for (const auto& r : idx["raw"]) {
    raw_steps.insert(r["step"].get<std::int64_t>());
    ASSERT_TRUE(r["eval"].contains("score")) << r.dump();
    // The raw checkpoint as stored (f32 values exactly): only summation order differs.
    EXPECT_NEAR(r["eval"]["score"].get<double>(), tensor_sum(r["step"]), 1e-9 * kRows * kCols);
  }
  EXPECT_EQ(raw_steps, emission_steps);

  // `wsm status` shows the newest score per label, failures included.
  const auto st = test::run_command(test::wsm_binary().string() + " status --json --connect " + endpoint_);
  ASSERT_EQ(st.rc, 0) << st.err;
  const auto status = nlohmann::json::parse(st.out);
  std::map<std::string, nlohmann::json> by_label;
  for (const auto& s : status["scores"]) by_label[s["label"]] = s;
  ASSERT_TRUE(by_label.contains("raw") && by_label.contains("linear_w200") && by_label.contains("cosine_w200"))
      << st.out;
  EXPECT_EQ(by_label["raw"]["step"], "500");  // protobuf's JSON prints 64-bit integers as strings
  EXPECT_NEAR(by_label["raw"]["score"].get<double>(), tensor_sum(500), 1e-9 * kRows * kCols);
  EXPECT_NE(by_label["cosine_w200"]["error"].get<std::string>().find("no cosine today"), std::string::npos);
  const auto text = test::run_command(test::wsm_binary().string() + " status --connect " + endpoint_);
  EXPECT_NE(text.out.find("newest scores"), std::string::npos) << text.out;

  // The failures stopped nothing: the daemon takes the next checkpoint and scores its output.
  send_steps(endpoint_, "ev", 600, 600);
  ASSERT_TRUE(test::wait_for([&] { return scored_at(600) == 3; }, 30000)) << read_index(out).dump(1);

  // The report: one picture per run, PNG and SVG, and a table of the newest scores.
  const auto rep = test::run_wsm("report '" + out.string() + "'");
  ASSERT_EQ(rep.rc, 0) << rep.out << rep.err;
  EXPECT_NE(rep.out.find("linear_w200"), std::string::npos) << rep.out;
  const std::string png = test::slurp(out / "report" / "ev.png");
  ASSERT_GT(png.size(), 5000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  const auto py = test::run_command(std::string(WSM_PYTHON) +
                                    " -c \"import sys, xml.etree.ElementTree as E; "
                                    "print(E.parse(sys.argv[1]).getroot().tag.split('}')[-1])\" '" +
                                    (out / "report" / "ev.svg").string() + "'");
  EXPECT_EQ(py.out, "svg\n") << py.err;
  const auto rj = test::run_wsm("report --json '" + out.string() + "'");
  ASSERT_EQ(rj.rc, 0) << rj.err;
  std::map<std::string, nlohmann::json> curves;
  const auto report = nlohmann::json::parse(rj.out);  // named: a range-for over parse(...)["curves"] dangles
  for (const auto& c : report["curves"]) curves[c["label"].get<std::string>()] = c;
  EXPECT_EQ(curves["linear_w200"]["scored"], 5) << rj.out;  // steps 200..600
  EXPECT_EQ(curves["cosine_w200"]["failed"], 5);
  EXPECT_EQ(curves["raw"]["scored"], 5);
  EXPECT_TRUE(test::stop_wsm_serve(pid_));
  pid_ = -1;
}

// An evaluation slower than the checkpoints never holds up ingest: every checkpoint is acknowledged
// while evaluations are still queued, and a clean stop does not wait for the queued ones.
TEST_F(ServeEval, SlowEvaluationDoesNotBlockIngest) {
  const fs::path out = dir_ / "out";
  pid_ = test::spawn_wsm_serve(dir_, endpoint_,
                               {"--out", out.string(), "--emulate", "linear:200", "--every", "100", "--eval-cmd",
                                "sleep 2; echo 1"});
  ASSERT_GT(pid_, 0);
  const auto start = std::chrono::steady_clock::now();
  send_steps(endpoint_, "slow", 100, 800);  // 7 outputs and 7 raw checkpoints: 28 s of evaluation
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 10.0);
  const auto st = test::run_command(test::wsm_binary().string() + " status --json --connect " + endpoint_);
  ASSERT_EQ(st.rc, 0) << st.err;
  EXPECT_EQ(nlohmann::json::parse(st.out)["checkpoints_received"], "8");
  EXPECT_GT(nlohmann::json::parse(st.out).value("evals_pending", 0), 0) << st.out;
  EXPECT_TRUE(test::stop_wsm_serve(pid_));  // within 15 s: the running evaluation finishes, the queue is dropped
  pid_ = -1;
  EXPECT_NE(test::slurp(dir_ / "serve.log").find("queued evaluations dropped"), std::string::npos);
}

}  // namespace
}  // namespace wsm
