// `wsm weights` and `wsm schedule` run as a user would: the built binary, its JSON checked against
// the library and docs/method-guide.md, its plots checked as real PNG/SVG files (SVG parsed by Python's XML).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>

#include "wsm/schedules/decay.h"
#include "wsm/schedules/emulate.h"
#include "wsm/schedules/schedule.h"
#include "tests/run_command.h"

namespace wsm {
namespace {

namespace fs = std::filesystem;
const fs::path kWsm = fs::path(WSM_BINARY_DIR) / "wsm";

using Result = test::CommandResult;
using test::run_command;
using test::slurp;

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kWsm)) GTEST_SKIP() << kWsm << " is not built (build the `wsm` target to run the CLI tests)";
    dir_ = fs::temp_directory_path() / ("wsm_cli_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  Result run(const std::string& args) const { return run_command(kWsm.string() + " " + args); }
  fs::path dir_;
};

TEST_F(Cli, WeightsJsonMatchesLibraryAndMethodTable) {
  const std::vector<std::pair<std::string, std::vector<double>>> table = {
      {"linear", {0.2, 0.2, 0.2, 0.2, 0.2}},
      {"cosine", {0.0955, 0.2500, 0.3090, 0.2500, 0.0955}},
      {"1-sqrt", {0.4472, 0.1852, 0.1421, 0.1198, 0.1056}},
  };
  for (const auto& [shape, expected] : table) {
    const auto r = run("weights --shape " + shape + " --count 5 --json");
    ASSERT_EQ(r.rc, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);  // exactly one JSON object
    ASSERT_TRUE(j.is_object());
    const auto c = j.at("weights").get<std::vector<double>>();
    const auto w = j.at("decay").get<std::vector<double>>();
    ASSERT_EQ(c.size(), 5u);
    ASSERT_EQ(w.size(), 4u);
    for (std::size_t i = 0; i < 5; ++i) EXPECT_NEAR(c[i], expected[i], 5e-5) << shape;
    // w_i = sum_{j>=i} c_j (docs/method-guide.md)
    for (std::size_t i = 1; i <= 4; ++i) {
      double tail = 0;
      for (std::size_t m = i; m < 5; ++m) tail += c[m];
      EXPECT_NEAR(w[i - 1], tail, 1e-12);
    }
  }
  for (const char* shape : {"inverse-sqrt", "exponential", "wma", "cosine,floor=0.1", "ema:alpha=0.2"}) {
    const auto r = run(std::string("weights --shape '") + shape + "' --count 7 --json");
    ASSERT_EQ(r.rc, 0) << shape << ": " << r.err;
    const auto c = nlohmann::json::parse(r.out).at("weights").get<std::vector<double>>();
    const auto lib = merge_weights(parse_merge_spec(shape), 7);
    ASSERT_EQ(c.size(), lib.size());
    for (std::size_t i = 0; i < c.size(); ++i) EXPECT_DOUBLE_EQ(c[i], lib[i]) << shape;
  }
  // --floor on the command line equals floor= in the spec.
  const auto a = run("weights --shape cosine --count 6 --floor 0.25 --json");
  const auto b = run("weights --shape cosine,floor=0.25 --count 6 --json");
  ASSERT_EQ(a.rc, 0);
  EXPECT_EQ(a.out, b.out);
}

TEST_F(Cli, WeightsTablesAndMonotonicity) {
  auto r = run("weights --decay 1,0.5,0.25 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto c = nlohmann::json::parse(r.out).at("weights").get<std::vector<double>>();
  ASSERT_EQ(c.size(), 4u);
  EXPECT_NEAR(c[0], 0.0, 1e-15);
  EXPECT_NEAR(c[1], 0.5, 1e-15);
  EXPECT_NEAR(c[3], 0.25, 1e-15);

  r = run("weights --decay 0.9,0.3,0.6 --json");
  EXPECT_NE(r.rc, 0);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("non-increasing"), std::string::npos) << r.err;

  r = run("weights --decay 0.9,0.3,0.6 --allow-non-monotone --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  c = nlohmann::json::parse(r.out).at("weights").get<std::vector<double>>();
  EXPECT_NEAR(c[2], -0.3, 1e-12);

  r = run("weights --weights 1,1,2 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  c = nlohmann::json::parse(r.out).at("weights").get<std::vector<double>>();
  EXPECT_NEAR(c[2], 0.5, 1e-15);
}

TEST_F(Cli, WeightsForAWindowOverUnevenCheckpoints) {
  const std::vector<std::int64_t> positions = {0, 450, 700, 900, 950, 1300, 1450};
  const auto r = run("weights --shape 1-sqrt --window 1000 --positions 0,450,700,900,950,1300,1450 --json");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("positions").get<std::vector<std::int64_t>>(), (std::vector<std::int64_t>{700, 900, 950, 1300, 1450}));
  const auto w = j.at("decay").get<std::vector<double>>();
  ASSERT_EQ(w.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i)  // w_i = 1 - sqrt((p_i - 700) / 1000)
    EXPECT_NEAR(w[i], 1 - std::sqrt((j.at("positions")[i + 1].get<double>() - 700) / 1000), 1e-14);
  const auto lib = select_window(parse_merge_spec("1-sqrt"), positions, 1000);
  EXPECT_EQ(j.at("weights").get<std::vector<double>>(), lib.weights);
  EXPECT_NE(run("weights --shape 1-sqrt --window 1000 --positions 5,3").rc, 0);  // not ascending
  EXPECT_NE(run("weights --shape 1-sqrt --window 1000").rc, 0);                 // no positions
}

TEST_F(Cli, ErrorsGoToStderrWithNonZeroExit) {
  for (const char* args : {"weights --shape triangle --count 3", "weights --shape cosine",
                           "weights --shape cosine --count 4 --decay 1,0.5", "schedule 'zigzag:x=1' --steps 10",
                           "schedule 'warmup=10,stable' --steps 100 --compare-merge 1-sqrt", "schedule stable --steps 10 --plot x.bmp"}) {
    const auto r = run(args);
    EXPECT_NE(r.rc, 0) << args;
    EXPECT_FALSE(r.err.empty()) << args;
  }
}

TEST_F(Cli, HelpHasExamples) {
  for (const char* cmd : {"weights", "schedule"}) {
    const auto r = run(std::string(cmd) + " --help");
    EXPECT_EQ(r.rc, 0);
    EXPECT_NE(r.out.find("Example"), std::string::npos) << cmd;
    EXPECT_NE(r.out.find(std::string("wsm ") + cmd + " "), std::string::npos) << cmd;
  }
}

TEST_F(Cli, ScheduleJsonMatchesLibrary) {
  const std::string spec = "wsd:warmup=100,decay=400,shape=1-sqrt,floor=0.1,peak=0.001";
  const auto r = run("schedule '" + spec + "' --steps 2000 --every 7 --json --compare-merge 1-sqrt:400 --merge-every 50");
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const Schedule lib = parse_schedule(spec).with_total(2000);
  EXPECT_EQ(j.at("schedule").get<std::string>(), lib.to_string());
  const auto steps = j.at("step").get<std::vector<std::int64_t>>();
  const auto lr = j.at("lr").get<std::vector<double>>();
  ASSERT_EQ(steps.size(), lr.size());
  ASSERT_EQ(steps.front(), 0);
  ASSERT_EQ(steps.back(), 1999);
  for (std::size_t i = 0; i < steps.size(); ++i) EXPECT_DOUBLE_EQ(lr[i], lib.lr_at(steps[i]));

  const auto& m = j.at("merge");
  const auto em = emulate_merge(parse_merge_spec("1-sqrt"), 2000, 400, 50);
  EXPECT_EQ(m.at("checkpoints").get<std::vector<std::int64_t>>(), em.positions);
  EXPECT_EQ(m.at("checkpoints").get<std::vector<std::int64_t>>().size(), 8u);  // (1600, 2000] every 50
  const auto mw = m.at("weights").get<std::vector<double>>();
  const auto paper = merge_weights(parse_merge_spec("1-sqrt"), 8);  // even spacing: w_i = f(i/8)
  for (std::size_t i = 0; i < 8; ++i) EXPECT_NEAR(mw[i], paper[i], 1e-14);
  // A WSD schedule's merge averages its constant-LR trunk (same warmup and peak, no decay): the
  // overlay is the emulated decay alone, not the emulated decay on top of the real one.
  const Schedule trunk = parse_schedule("warmup=100,stable,peak=0.001");
  const auto mlr = m.at("lr").get<std::vector<double>>();
  for (std::size_t i = 0; i < steps.size(); ++i) EXPECT_DOUBLE_EQ(mlr[i], trunk.lr_at(steps[i]) * em.factor[steps[i]]);
  EXPECT_DOUBLE_EQ(mlr.back(), 0.001 * em.decay.back());  // the last update enters with w_k at peak LR
  EXPECT_GT(mlr.back(), lr.back() * em.decay.back());      // a double decay would end here
}

TEST_F(Cli, ScheduleCsv) {
  const auto r = run("schedule 'cosine:warmup=10,total=100,peak=1' --steps 100 --every 10 --csv");
  ASSERT_EQ(r.rc, 0) << r.err;
  std::istringstream in(r.out);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "step,lr");
  const Schedule lib = parse_schedule("cosine:warmup=10,total=100,peak=1");
  int rows = 0;
  while (std::getline(in, line)) {
    const auto comma = line.find(',');
    ASSERT_NE(comma, std::string::npos);
    const auto step = std::stoll(line.substr(0, comma));
    EXPECT_DOUBLE_EQ(std::stod(line.substr(comma + 1)), lib.lr_at(step)) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 11);  // 0, 10, ..., 90 and the last step 99
}

TEST_F(Cli, PlotsAreRealFiles) {
  const fs::path png = dir_ / "lr.png", svg = dir_ / "lr.svg";
  const std::string common = "schedule 'warmup=200,stable,peak=3e-4' --steps 5000 --compare-merge 1-sqrt:1000 --plot ";
  auto r = run(common + "'" + png.string() + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string bytes = slurp(png);
  ASSERT_GT(bytes.size(), 5000u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));

  r = run(common + "'" + svg.string() + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_GT(fs::file_size(svg), 5000u);
  // Parsed as XML by Python: the root is <svg> and it draws many paths/glyphs (axes, text, lines).
  const auto py = run_command(std::string(WSM_PYTHON) +
                              " -c \"import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); "
                              "print(r.tag.split('}')[-1], sum(1 for _ in r.iter()))\" '" + svg.string() + "'");
  ASSERT_EQ(py.rc, 0) << py.err;
  std::istringstream in(py.out);
  std::string tag;
  int elements = 0;
  in >> tag >> elements;
  EXPECT_EQ(tag, "svg");
  EXPECT_GT(elements, 20);
  // No temporary left next to the outputs (written atomically).
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_)) files += e.path().filename() != "stderr.txt";
  EXPECT_EQ(files, 2);
}

}  // namespace
}  // namespace wsm
