// Running sums (merger/daemon/running_sum.h): uniform and EMA emulations kept as f64 running sums equal a
// double-precision reference over the window (weights from docs/method-guide.md's formulas, not from the
// daemon), over a sequence where checkpoints leave the window many times and recomputes happen;
// uneven spacing falls back to the full merge; --running-sums off merges in full; a restart with
// --store (clean stop, kill -9) rebuilds the window and the sums from disk.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serve_test_util.h"

namespace wsm {
namespace {

const std::vector<std::vector<std::int64_t>> kShapes{{64, 33}, {100}};

// The weights docs/method-guide.md gives for the selected window, computed here independently.
std::vector<double> reference_weights(const std::string& spec, std::size_t count) {
  std::vector<double> c(count);
  if (spec.rfind("ema", 0) == 0) {
    const double a = std::stod(spec.substr(spec.find("alpha=") + 6));
    const std::size_t k = count - 1;
    c[0] = std::pow(1 - a, static_cast<double>(k));
    for (std::size_t j = 1; j <= k; ++j) c[j] = a * std::pow(1 - a, static_cast<double>(k - j));
  } else {
    for (auto& x : c) x = 1.0 / static_cast<double>(count);  // linear over evenly spaced checkpoints
  }
  return c;
}

struct Check {
  double max_ulps = 0;        // largest |got - ref| in units of the f32 ulp at ref
  double max_abs = 0;         // largest |got - ref|
  std::uint64_t elements = 0, not_nearest = 0;  // outputs that are not ref rounded to nearest
};

// Output `rec` against sum_j c_j theta_j in double, theta from the formula, over the window
// (newest - window, newest] of `sent`.
Check check_output(const nlohmann::json& rec, const std::vector<std::int64_t>& sent, bool expect_uniform_or_ema) {
  Check r;
  const std::int64_t step = rec["step"], window = rec["window"];
  std::vector<std::int64_t> src;
  for (auto s : sent)
    if (s <= step && s > step - window) src.push_back(s);
  EXPECT_EQ(rec["sources"].get<std::vector<std::int64_t>>(), src) << rec.dump();
  std::vector<double> c;
  if (expect_uniform_or_ema) {
    c = reference_weights(rec["spec"].get<std::string>(), src.size());
    const auto got = rec["weights"].get<std::vector<double>>();
    EXPECT_EQ(got.size(), c.size());
    for (std::size_t j = 0; j < std::min(got.size(), c.size()); ++j) EXPECT_NEAR(got[j], c[j], 1e-12) << rec.dump();
  } else {
    c = rec["weights"].get<std::vector<double>>();  // uneven spacing: schedules/ decides
  }
  const auto ckpt = load_checkpoint(rec["path"].get<std::string>());
  EXPECT_EQ(nlohmann::json::parse(ckpt.meta.extra.at("wsm.provenance")).at("method"), rec["method"]);
  EXPECT_EQ(ckpt.tensors.size(), kShapes.size() + 1);
  for (std::size_t t = 0; t < kShapes.size() && t < ckpt.tensors.size(); ++t) {
    const auto& out = ckpt.tensors[t];
    EXPECT_EQ(out.info.dtype, DType::f32);
    const std::size_t n = out.data.size() / 4;
    for (std::size_t i = 0; i < n; ++i) {
      double ref = 0;
      for (std::size_t j = 0; j < src.size(); ++j) ref += c[j] * test::tensor_value(static_cast<int>(t), src[j], i);
      float got;
      std::memcpy(&got, out.data.data() + i * 4, 4);
      const float nearest = static_cast<float>(ref);
      const double ulp = std::nextafter(std::abs(nearest), INFINITY) - std::abs(nearest);
      r.max_ulps = std::max(r.max_ulps, std::abs(got - ref) / ulp);
      r.max_abs = std::max(r.max_abs, std::abs(got - ref));
      r.not_nearest += got != nearest;
      ++r.elements;
    }
  }
  std::int64_t counter = -1;
  if (ckpt.tensors.size() > kShapes.size()) std::memcpy(&counter, ckpt.tensors.back().data.data(), 8);
  EXPECT_EQ(counter, step) << "the integer tensor is the newest checkpoint's";
  return r;
}

void send_paced(test::ServerThread& server, const std::string& run, const std::vector<std::int64_t>& steps) {
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = run;
  co.chunk_bytes = 5000;
  MergerClient client(co);
  for (auto step : steps) {
    auto model = test::make_model(step, kShapes);
    auto v = test::views(model);
    std::int64_t counter = step;
    v.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&counter), 8}});
    client.send_checkpoint(step, step * 1000, 1e-3, v);
    client.flush();  // paced: every update and output runs, none is coalesced away
    server.server().wait_outputs_idle();
  }
  client.close();
}

nlohmann::json read_index(const std::filesystem::path& out) {
  std::ifstream in(out / "index.json");
  EXPECT_TRUE(in) << "no index.json in " << out;
  return in ? nlohmann::json::parse(in)["outputs"] : nlohmann::json::array();
}

std::vector<std::int64_t> range(std::int64_t from, std::int64_t to, std::int64_t by) {
  std::vector<std::int64_t> v;
  for (auto s = from; s <= to; s += by) v.push_back(s);
  return v;
}

TEST(ServeRunningSums, UniformAndEmaMatchDoubleReferenceThroughRecomputes) {
  const auto out = test::temp_dir("rs-out");
  auto opts = test::server_options(out, "linear:400,ema:alpha=0.3:500", 100);
  opts.sums.recompute_every = 3;  // a recompute every 4th output: several in the sequence
  test::ServerThread server(opts);
  const auto steps = range(0, 2000, 100);
  send_paced(server, "rs", steps);

  const auto outputs = read_index(out);
  // window_covered: linear:400 is covered from 300 on (0..300 fill (-100, 300]: 18 outputs),
  // ema:...:500 from 400 on (17).
  ASSERT_EQ(outputs.size(), 35u);
  std::map<std::string, int> recomputed, incremental;
  Check worst;
  for (const auto& rec : outputs) {
    const std::string label = rec["label"];
    const bool ema = label.rfind("ema", 0) == 0;
    EXPECT_EQ(rec["method"], ema ? "running-sum (ema)" : "running-sum (uniform)") << rec.dump();
    (rec["running_sum"]["recomputed"].get<bool>() ? recomputed : incremental)[label]++;
    // Incremental updates read what entered and left the tail (+ the EMA anchor), not the window.
    if (!rec["running_sum"]["recomputed"].get<bool>()) {
      EXPECT_LE(rec["running_sum"]["read"].get<int>(), ema ? 3 : 2);
    }
    const auto c = check_output(rec, steps, true);
    worst.max_ulps = std::max(worst.max_ulps, c.max_ulps);
    worst.elements += c.elements;
    worst.not_nearest += c.not_nearest;
  }
  for (const auto& [label, n] : recomputed) {
    EXPECT_GE(n, 3) << label << ": the first output and the periodic recomputes";
    EXPECT_GE(incremental[label], 9) << label;
  }
  // f64 state rounded once: within 1 ulp of f32 everywhere, and the nearest f32 nearly always.
  EXPECT_LE(worst.max_ulps, 1.0);
  EXPECT_LE(worst.not_nearest, worst.elements / 1000) << worst.not_nearest << " of " << worst.elements;
}

TEST(ServeRunningSums, UnevenSpacingFallsBackToFullMerge) {
  const auto out = test::temp_dir("rs-uneven");
  test::ServerThread server(test::server_options(out, "linear:300", 50));
  std::vector<std::int64_t> steps{0, 100, 200, 300, 400, 450, 500, 600, 700, 800, 900, 1000};
  send_paced(server, "uneven", steps);
  int full = 0, sums = 0;
  for (const auto& rec : read_index(out)) {
    const std::int64_t step = rec["step"];
    // Windows holding step 450 are unevenly spaced: linear's weights are not uniform there.
    const bool uneven = step >= 450 && step <= 700;
    EXPECT_EQ(rec["method"], uneven ? "full-merge" : "running-sum (uniform)") << rec.dump();
    (uneven ? full : sums)++;
    const auto c = check_output(rec, steps, !uneven);
    // The full merge accumulates in f32 (as test_serve_end_to_end allows); running sums: 1 ulp.
    if (uneven) {
      EXPECT_LT(c.max_abs, 2e-6) << rec.dump();
    } else {
      EXPECT_LE(c.max_ulps, 1.0) << rec.dump();
    }
  }
  EXPECT_EQ(full, 4);
  EXPECT_EQ(sums, 6);  // 200..400 before, 800..1000 after (the first of those recomputed)
}

TEST(ServeRunningSums, OffMergesEveryOutputInFull) {
  const auto out = test::temp_dir("rs-off");
  auto opts = test::server_options(out, "linear:300,ema:alpha=0.5:300", 100);
  opts.core.running_sums = false;
  test::ServerThread server(opts);
  send_paced(server, "off", range(0, 600, 100));
  const auto outputs = read_index(out);
  EXPECT_EQ(outputs.size(), 10u);  // both covered from 200 on (0, 100, 200 fill the window): 200..600
  for (const auto& rec : outputs) EXPECT_EQ(rec["method"], "full-merge") << rec.dump();
}

TEST(ServeRunningSums, RestartAfterCleanStopRebuildsWindowAndSums) {
  const auto dir = test::temp_dir("rs-restart");
  auto opts = test::server_options(dir / "out", "linear:300", 100);
  opts.core.store.store_dir = dir / "store";
  opts.core.store.write_backlog = 1;  // the writer is always "behind": credit waits for every file
  const auto before = range(100, 600, 100), after = range(700, 900, 100);
  {
    test::ServerThread server(opts);
    send_paced(server, "r", before);
    server.stop();  // clean: what was acknowledged is on disk
  }
  for (auto step : range(300, 600, 100)) {
    char name[64];
    std::snprintf(name, sizeof name, "step_%012lld.h5", static_cast<long long>(step));
    EXPECT_TRUE(std::filesystem::exists(dir / "store" / "r" / name)) << name;
  }
  test::ServerThread again(opts);
  std::vector<std::int64_t> rebuilt;
  for (const auto& e : again.server().window().entries("r")) rebuilt.push_back(e->step);
  EXPECT_EQ(rebuilt, range(300, 600, 100));
  send_paced(again, "r", after);
  auto all = before;
  all.insert(all.end(), after.begin(), after.end());
  const auto outputs = read_index(dir / "out");
  ASSERT_EQ(outputs.size(), 7u);  // 300..600 before (100, 200, 300 fill (0, 300]), 700..900 after
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    const auto& rec = outputs[i];
    EXPECT_EQ(rec["method"], "running-sum (uniform)");
    // The first output after the restart rebuilds the sum from the window on disk.
    if (rec["step"] == 700) {
      EXPECT_TRUE(rec["running_sum"]["recomputed"].get<bool>()) << rec.dump();
    }
    EXPECT_LE(check_output(rec, all, true).max_ulps, 1.0);
  }
}

TEST(ServeRunningSums, RestartAfterKillRebuildsWindowFromStore) {
  const std::string wsm = std::string(WSM_BINARY_DIR) + "/wsm";
  if (::access(wsm.c_str(), X_OK) != 0) GTEST_SKIP() << wsm << " is not built";
  const auto dir = test::temp_dir("rs-kill");
  const std::string endpoint = test::free_loopback_endpoint();
  const std::string out = (dir / "out").string(), store = (dir / "store").string();
  const pid_t pid = test::spawn_wsm_serve(dir, endpoint,
                                          {"--out", out, "--emulate", "linear:300", "--every", "100", "--store", store});
  ASSERT_GT(pid, 0);
  const auto before = range(100, 600, 100);
  {
    ClientOptions co;
    co.endpoint = endpoint;
    co.run_id = "k";
    MergerClient client(co);
    for (auto step : before) {
      auto model = test::make_model(step, kShapes);
      auto v = test::views(model);
      std::int64_t counter = step;
      v.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&counter), 8}});
      client.send_checkpoint(step, step * 1000, 1e-3, v);
    }
    client.flush();
  }
  // Acknowledged is not yet persisted: wait for the files (the writer renames when done).
  const auto file = std::filesystem::path(store) / "k" / "step_000000000600.h5";
  for (int i = 0; i < 200 && !std::filesystem::exists(file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  ASSERT_TRUE(std::filesystem::exists(file));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);

  auto opts = test::server_options(out, "linear:300", 100);
  opts.core.store.store_dir = store;
  test::ServerThread again(opts);
  std::vector<std::int64_t> rebuilt;
  for (const auto& e : again.server().window().entries("k")) rebuilt.push_back(e->step);
  EXPECT_EQ(rebuilt, range(300, 600, 100));
  // Nothing half-written is taken for a checkpoint.
  for (const auto& f : std::filesystem::recursive_directory_iterator(store))
    if (f.is_regular_file()) {
      EXPECT_EQ(f.path().filename().string().find(".tmp-"), std::string::npos) << f.path();
    }
  send_paced(again, "k", {700});
  auto all = before;
  all.push_back(700);
  bool found = false;
  for (const auto& rec : read_index(out))
    if (rec["step"] == 700) {
      found = true;
      EXPECT_TRUE(rec["running_sum"]["recomputed"].get<bool>());
      EXPECT_LE(check_output(rec, all, true).max_ulps, 1.0);
    }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace wsm
