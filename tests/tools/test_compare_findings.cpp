// `wsm compare study` beyond its main table: the training phase classified from the trunk's fall
// and the decay's gain (tested on the numbers of a real early and a real stable-phase run), the
// checkpoint-interval ablation (--granularity: sources subsampled from the kept trunk, weights from
// the method's formula, nothing retrained), and `wsm compare trend` across two run lengths.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/run_command.h"
#include "tests/synthetic_text.h"
#include "tools/compare/findings.h"
#include "tools/compare/regime.h"
#include "tools/compare/seed_scores.h"
#include "tools/compare/study.h"
#include "wsm/core/error.h"

namespace wsm::tools::compare {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using test::run_wsm;

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

// The 600-step `small` study (1.5 tokens per parameter): over its last 120 steps the trunk fell
// 0.11 nats while the decays gained 0.07. A one-seed run to 8,000 steps (20 tokens per parameter):
// over the last 800 steps the trunk fell 0.0125 nats, the decay gained 0.078.
TEST(ComparePhase, EarlyAndStableRunsFromTheirTwoNumbers) {
  EXPECT_EQ(classify_phase(0.11, 0.07), TrainingPhase::early);
  EXPECT_EQ(classify_phase(0.0125, 0.078), TrainingPhase::stable);
  EXPECT_EQ(classify_phase(0.03, 0.08), TrainingPhase::transition);  // 0.375 of the gain
  EXPECT_EQ(classify_phase(0.04, 0.08), TrainingPhase::early);       // exactly half
  EXPECT_EQ(classify_phase(0.02, 0.08), TrainingPhase::stable);      // exactly a quarter
  EXPECT_EQ(classify_phase(0.01, -0.01), TrainingPhase::early);      // a decay that gains nothing
  EXPECT_EQ(classify_phase(-0.001, 0.0), TrainingPhase::stable);
}

ScoredModel row(Method m, std::uint64_t seed, std::int64_t step, double score, const std::string& shape = "",
                std::int64_t window = 0) {
  ScoredModel r;
  r.method = m, r.seed = seed, r.step = step, r.score = score, r.shape = shape, r.window = window;
  r.final = step == 1000;
  return r;
}

TEST(ComparePhase, EvidenceFromRowsPairsTheTrunkPerSeed) {
  // Two seeds; S = 1000, D = 100. Trunk falls 0.05 and 0.03 (mean 0.04); WSD gains 0.2 and 0.1 on
  // the trunk at S: mean gain 0.15, fall / gain 0.27 -> transition.
  std::vector<ScoredModel> rows = {row(Method::raw, 1, 900, 2.05), row(Method::raw, 1, 1000, 2.00),
                                   row(Method::raw, 2, 900, 2.13), row(Method::raw, 2, 1000, 2.10),
                                   row(Method::wsd, 1, 1000, 1.80, "linear", 100), row(Method::wsd, 2, 1000, 2.00, "linear", 100),
                                   row(Method::wsm, 1, 1000, 1.85, "linear", 100), row(Method::wsm, 2, 1000, 2.01, "linear", 100)};
  const auto cells = summarize_study(rows, ScoreOrder::lower_is_better);
  ASSERT_EQ(cells.size(), 1u);
  const auto e = phase_evidence(rows, cells, 1000);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_NEAR(e[0].trunk_fall.mean, 0.04, 1e-12);
  EXPECT_NEAR(e[0].decay_gain, 0.15, 1e-12);
  EXPECT_EQ(e[0].phase, TrainingPhase::transition);
}

TEST(CompareWords, OneSeedSaysBetterOrWorse) {
  EXPECT_EQ(judgement(summarize(std::vector<double>{0.0251}), ScoreOrder::lower_is_better), "is worse than WSD (one seed, no interval)");
  EXPECT_EQ(judgement(summarize(std::vector<double>{-0.01}), ScoreOrder::lower_is_better), "beats WSD (one seed, no interval)");
  EXPECT_EQ(judgement(summarize(std::vector<double>{-0.01}), ScoreOrder::higher_is_better), "is worse than WSD (one seed, no interval)");
  EXPECT_EQ(judgement(summarize(std::vector<double>{0.020, 0.021, 0.022}), ScoreOrder::lower_is_better), "is worse than WSD");
  EXPECT_EQ(judgement(summarize(std::vector<double>{-0.01, 0.02, 0.0}), ScoreOrder::lower_is_better), "matches WSD");
}

TEST(CompareGranularity, StepsAreEvenlySpacedEndingAtS) {
  EXPECT_EQ(granularity_steps(8000, 800, 16, 50).size(), 16u);
  EXPECT_EQ(granularity_steps(8000, 800, 16, 50).front(), 7250);
  EXPECT_EQ(granularity_steps(8000, 800, 4, 50), (std::vector<std::int64_t>{7400, 7600, 7800, 8000}));
  EXPECT_EQ(granularity_steps(8000, 1600, 2, 50), (std::vector<std::int64_t>{7200, 8000}));
  EXPECT_THROW(granularity_steps(8000, 800, 3, 50), Error);   // 800 / 3 is not whole
  EXPECT_THROW(granularity_steps(8000, 800, 32, 50), Error);  // 25 steps: finer than the trunk's interval
  EXPECT_THROW(granularity_steps(8000, 800, 1, 50), Error);
}

std::string study_args(const fs::path& root, const fs::path& out, int steps, const std::string& extra) {
  // D = a third of the run, so both runs' cells line up in the trend.
  return "compare study --preset tiny --steps " + std::to_string(steps) + " --every 5 --seeds 2 --durations " +
         std::to_string(steps / 3) + " "
         "--shapes linear,1-sqrt --eval-positions 1024 --data '" + (root / "train.txt").string() + "' --val '" +
         (root / "val.txt").string() + "' --out '" + out.string() + "' " + extra;
}

TEST(CompareGranularity, AblationReusesTheTrunkAndTrendReadsTwoStudies) {
  const fs::path root = fs::temp_directory_path() / ("wsm_compare_findings_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  std::ofstream(root / "train.txt") << test::synthetic_text(20000);
  std::ofstream(root / "val.txt") << test::synthetic_text(4000).substr(1000);
  const fs::path a = root / "a", b = root / "b";
  ASSERT_EQ(run_wsm(study_args(root, a, 60, "")).rc, 0);
  const auto trunk_ckpt = a / "runs" / "seed1" / "trunk" / "step_000000000060.h5";
  const auto before = fs::last_write_time(trunk_ckpt);

  // The ablation added to the finished study: nothing is retrained.
  const auto r = run_wsm(study_args(root, a, 60, "--granularity 2,4"));
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_EQ(fs::last_write_time(trunk_ckpt), before);
  const json doc = read_json(a / "results.json");
  int ablation = 0;
  for (const auto& m : doc.at("results")) {
    if (!m.contains("interval")) continue;
    ++ablation;
    const std::int64_t interval = m.at("interval");
    const auto sources = m.at("sources").get<std::vector<std::int64_t>>();
    const auto weights = m.at("weights").get<std::vector<double>>();
    ASSERT_EQ(std::int64_t(sources.size()), 20 / interval) << m.dump();
    for (std::size_t j = 0; j < sources.size(); ++j) EXPECT_EQ(sources[j], 60 - 20 + interval * std::int64_t(j + 1));
    if (m.at("shape") == "linear") {
      for (double w : weights) EXPECT_NEAR(w, 1.0 / double(sources.size()), 1e-12);
    }
    if (m.at("shape") == "1-sqrt" && sources.size() == 2) {  // w_1 = 1 - sqrt(1/2): c_0 = sqrt(1/2), c_1 = 1 - sqrt(1/2)
      EXPECT_NEAR(weights[0], std::sqrt(0.5), 1e-12);
      EXPECT_NEAR(weights[1], 1 - std::sqrt(0.5), 1e-12);
    }
    ASSERT_TRUE(m.at("score").is_number());
  }
  EXPECT_EQ(ablation, 2 * 2 * 2);  // seeds x counts x shapes
  ASSERT_EQ(doc.at("granularity").size(), 4u);  // shapes x counts, seeds paired
  for (const auto& g : doc.at("granularity")) EXPECT_EQ(g.at("seeds").size(), 2u);
  ASSERT_EQ(doc.at("regime").at("phases").size(), 1u);
  const std::string md = test::slurp(a / "report.md");
  for (const char* s : {"## Checkpoints per window", "## The paper's findings, here", "Phase from the shortest duration"})
    EXPECT_NE(md.find(s), std::string::npos) << s;
  EXPECT_TRUE(fs::exists(a / "granularity_d20.png"));

  // A longer run, then the trend over both: its cells are the studies' own summaries.
  ASSERT_EQ(run_wsm(study_args(root, b, 120, "")).rc, 0);
  const auto t = run_wsm("compare trend --out '" + (root / "trend").string() + "' '" + a.string() + "' '" + b.string() + "'");
  ASSERT_EQ(t.rc, 0) << t.out << t.err;
  const json trend = read_json(root / "trend" / "trend.json");
  ASSERT_EQ(trend.at("studies").size(), 2u);
  const json sb = read_json(b / "results.json");
  EXPECT_LT(trend["studies"][0]["tokens_per_param"].get<double>(), trend["studies"][1]["tokens_per_param"].get<double>());
  EXPECT_EQ(trend["studies"][1]["cells"][0]["best_wsm_minus_wsd"]["mean"], sb["summary"][0]["best_wsm_minus_wsd"]["mean"]);
  EXPECT_TRUE(fs::exists(root / "trend" / "trend_33pct.png"));
  EXPECT_NE(test::slurp(root / "trend" / "trend.md").find("| linear |"), std::string::npos);
  fs::remove_all(root);
}

}  // namespace
}  // namespace wsm::tools::compare
