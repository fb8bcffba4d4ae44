// `wsm merge` as a user runs it: the built executable on files, its outputs and their provenance
// checked against schedules/ and the version in CMakeLists.txt, and every argument error answered
// with a non-zero exit, one line naming the problem, and no output file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>

#include "wsm/formats/checkpoint.h"
#include "wsm/schedules/decay.h"
#include "tests/protocol/test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {

namespace fs = std::filesystem;
using test::run_wsm;

// The version as project(wsm VERSION x.y.z) states it: an independent reading of the source.
std::string cmake_project_version() {
  const std::string text = test::slurp(fs::path(WSM_SOURCE_DIR) / "CMakeLists.txt");
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(R"(project\(wsm VERSION ([0-9.]+))"))) return "?";
  return m[1];
}

// Shell-quoted path (appended piecewise: GCC 12 warns falsely on "'" + s + "'").
std::string q(const fs::path& p) {
  std::string s(1, '\'');
  s.append(p.string());
  s.push_back('\'');
  return s;
}

class MergeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
    for (int j = 0; j < 3; ++j) {
      Checkpoint c;
      c.meta.step = 100 * (j + 1);
      c.tensors.push_back(test::random_tensor("w", DType::f32, {5, 3}, 10 + j));
      // Finite values: random bit patterns may be NaN, which the merge would (rightly) propagate.
      for (std::size_t i = 0; i < 15; ++i) {
        const float v = float(j + 1) * float(i) / 7.0f;
        std::memcpy(c.tensors[0].data.data() + 4 * i, &v, 4);
      }
      inputs_.push_back(dir_ / ("in" + std::to_string(j) + ".safetensors"));
      save_checkpoint(inputs_.back(), c);
    }
  }
  std::string all_inputs() const {
    std::string s;
    for (const auto& p : inputs_) {
      s.push_back(' ');
      s.append(q(p));
    }
    return s;
  }
  std::size_t files_in_dir() const { return std::distance(fs::directory_iterator(dir_.path()), {}); }

  test::TempDir dir_;
  std::vector<fs::path> inputs_;
};

// NaN/Inf in an input reach the output through any nonzero weight: merge says so, like convert,
// naming the output and the input that holds them, and still writes the (faithful) result.
TEST_F(MergeCli, NonFiniteInputIsWarnedAboutByTensorAndInput) {
  Checkpoint c = load_checkpoint(inputs_[1]);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::memcpy(c.tensors[0].data.data() + 4 * 4, &nan, 4);
  std::memcpy(c.tensors[0].data.data() + 4 * 9, &inf, 4);
  save_checkpoint(inputs_[1], c);
  const auto r = run_wsm("merge --weights 0.2,0.3,0.5 --out " + q(dir_ / "m.safetensors") + all_inputs());
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::string log = r.err;  // logs go to stderr; stdout keeps only the result
  EXPECT_EQ(r.out.find("holds"), std::string::npos) << r.out;
  EXPECT_NE(log.find(inputs_[1].string() + ": input tensor 'w' holds 1 NaN and 1 Inf (first at element 4)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find((dir_ / "m.safetensors").string() + ": tensor 'w' holds"), std::string::npos) << log;
  EXPECT_EQ(log.find(inputs_[0].string() + ": input"), std::string::npos) << log;  // clean inputs not named
  const Checkpoint out = load_checkpoint(dir_ / "m.safetensors");
  float v4 = 0, v5 = 0;
  std::memcpy(&v4, out.tensors[0].data.data() + 4 * 4, 4);
  std::memcpy(&v5, out.tensors[0].data.data() + 4 * 5, 4);
  EXPECT_TRUE(std::isnan(v4));
  EXPECT_TRUE(std::isfinite(v5));
}

// Issue 24, item 5: a window longer than the history (3 checkpoints 100 steps apart, window 400)
// is merged as asked, but with a warning, since linear then weighs 0.25/0.25/0.5 instead of thirds;
// a window the history covers (300) merges without one.
TEST_F(MergeCli, AWindowPastTheHistoryIsWarnedAbout) {
  auto r =
      run_wsm("merge --shape linear --window-steps 400 --json --out " + q(dir_ / "long.safetensors") + all_inputs());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("reaches past the history"), std::string::npos) << r.err;
  const auto plan = nlohmann::json::parse(r.out);
  const auto weights = plan.at("plan").at("outputs").at(0).at("weights").get<std::vector<double>>();
  ASSERT_EQ(weights.size(), 3u);
  EXPECT_NEAR(weights[0], 0.25, 1e-12);  // w = f(1/4), f(2/4) = 0.75, 0.5 (docs/schedules.md)
  EXPECT_NEAR(weights[2], 0.5, 1e-12);
  r = run_wsm("merge --shape linear --window-steps 300 --out " + q(dir_ / "covered.safetensors") + all_inputs());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.err.find("reaches past the history"), std::string::npos) << r.err;
}

// One window syntax (wsm/schedules/window.h): --window-tokens takes 50M and 50Mt like --emulate (these
// inputs record no tokens, so the merge then stops on that, not on the syntax); a token window given
// to --window-steps is refused by name.
TEST_F(MergeCli, WindowTokensTakeTheEmulateSyntax) {
  for (const char* w : {"50M", "50Mt", "50000000"}) {
    const auto r =
        run_wsm(std::string("merge --window-tokens ") + w + " --out " + q(dir_ / "t.safetensors") + all_inputs());
    EXPECT_NE(r.rc, 0) << w;
    EXPECT_NE(r.err.find("records no token count"), std::string::npos) << w << ": " << r.err;
  }
  const auto r = run_wsm("merge --window-steps 50Mt --out " + q(dir_ / "t.safetensors") + all_inputs());
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("tokens"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "t.safetensors"));
}

TEST_F(MergeCli, VersionIsTheProjectVersion) {
  const auto r = run_wsm("--version");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find(cmake_project_version()), std::string::npos) << r.out;
}

TEST_F(MergeCli, SeveralShapesIntoADirectoryWithProvenance) {
  const auto r = run_wsm("merge --shape linear,cosine,floor=0.1 --out " + q(dir_ / "out") + all_inputs());
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::vector<std::pair<std::string, MergeSpec>> expect = {{"linear", parse_merge_spec("linear")},
                                                                  {"cosine_floor_0.1", parse_merge_spec("cosine,floor=0.1")}};
  for (const auto& [stem, spec] : expect) {
    const fs::path out = dir_ / "out" / (stem + ".safetensors");
    ASSERT_TRUE(fs::exists(out)) << out << "\n" << r.out;
    const Checkpoint c = load_checkpoint(out);
    const auto provenance = nlohmann::json::parse(c.meta.extra.at("wsm.provenance"));
    std::vector<double> weights;
    for (const auto& s : provenance.at("sources")) weights.push_back(s.at("weight").get<double>());
    const auto ref = merge_weights(spec, 3);
    ASSERT_EQ(weights.size(), ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(weights[i], ref[i], 1e-12) << stem;
    EXPECT_EQ(c.meta.extra.at("wsm.version"), cmake_project_version());
    EXPECT_EQ(provenance.at("tool"), "wsm merge");
    EXPECT_EQ(c.meta.step, 300);
    // Element 4 of input j is (j+1)*4/7: the merge is sum_j c_j (j+1) 4/7.
    float got;
    std::memcpy(&got, c.tensors.at(0).data.data() + 16, 4);
    const double want = (ref[0] * 1 + ref[1] * 2 + ref[2] * 3) * 4.0 / 7.0;
    EXPECT_NEAR(got, want, 1e-6) << stem;
  }
}

TEST_F(MergeCli, PatternDryRunAndWeights) {
  auto r = run_wsm("merge --shape 1-sqrt,linear --out " + q(dir_ / "m-{shape}.h5") + all_inputs());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "m-1-sqrt.h5"));
  EXPECT_TRUE(fs::exists(dir_ / "m-linear.h5"));

  const std::size_t before = files_in_dir();
  r = run_wsm("merge --dry-run --weights 0.2,0.3,0.5 --out " + q(dir_ / "never.safetensors") + all_inputs());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("0.200000 0.300000 0.500000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step=300"), std::string::npos) << r.out;
  EXPECT_EQ(files_in_dir(), before);
}

TEST_F(MergeCli, ArgumentErrorsExitNonZeroAndWriteNothing) {
  Checkpoint other;
  other.meta.step = 400;
  other.tensors.push_back(test::random_tensor("w", DType::f32, {3, 5}, 1));
  save_checkpoint(dir_ / "other-shape.safetensors", other);
  const std::string out = " --out " + q(dir_ / "bad.safetensors");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"merge --window-steps 200 --window-tokens 9" + out + all_inputs(), "excludes"},
      {"merge --shape bogus" + out + all_inputs(), "bogus"},
      {"merge --dtype i32" + out + all_inputs(), "i32"},
      {"merge --floor 1.5" + out + all_inputs(), "floor"},
      {"merge" + out + all_inputs() + " " + q(dir_ / "other-shape.safetensors"), "shape"},
      {"merge" + out + all_inputs() + " " + q(dir_ / "missing.safetensors"), "missing.safetensors"},
      {"merge --weights 0.5,0.5" + out + all_inputs(), "weights"},
      {"merge --out " + q(inputs_[0]) + all_inputs(), "also an input"},
      {"merge --window-steps 200" + out, "inputs"},
  };
  const std::size_t before = files_in_dir();
  for (const auto& [args, needle] : cases) {
    const auto r = run_wsm(args);
    EXPECT_NE(r.rc, 0) << args;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(files_in_dir(), before) << args;
  }
}

}  // namespace
}  // namespace wsm
