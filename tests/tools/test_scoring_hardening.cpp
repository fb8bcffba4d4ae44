// Issue 23, items 4 and 7: what an evaluation command prints cannot take down `wsm serve` or
// `wsm compare`. The score is found by a linear scan of a bounded tail of stdout (a 30,000-digit
// number once crashed std::regex), the numbers found are checked against strtod and a hand-made
// list, `{path}` substitution ends for a path containing `{path}`, a command printing 32 MiB on
// one line is read in linear time keeping only the tail, and every evaluation gets its own log.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <thread>

#include "tests/protocol/test_util.h"
#include "tests/run_command.h"
#include "tools/compare/jobs.h"
#include "tools/compare/scoring.h"

namespace wsm::tools::compare {
namespace {
namespace fs = std::filesystem;

// Runs `fn` in a forked child: whether it returned (exit 0) within `seconds`. A crash or an
// endless loop shows as false instead of taking the test binary with it.
bool returns_in_child(const std::function<void()>& fn, double seconds) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    fn();
    ::_exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return false;
}

TEST(ScoreParser, NumbersAsDocumented) {
  // Each case: text, the score expected (computed by strtod on the token a reader would pick).
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"epoch 3\nloss 2.5e-1\n", "2.5e-1"},  {"accuracy: 71.25%", "71.25"},   {"step_100", "100"},
      {"a .5 b", ".5"},                      {"x 7. y", "7."},                {"1-2", "-2"},
      {"v 1.5.3", ".3"},                     {"t 1e", "1"},                   {"t 1e+", "1"},
      {"q 3E+02 r", "3E+02"},                {"loss -0.125\n\n", "-0.125"},   {"+4", "+4"},
      {"loss 2 then nan", "nan"},            {"val -Infinity", "-Infinity"},  {"x INF", "INF"},
  };
  for (const auto& [text, token] : cases) {
    const auto got = parse_score(text, "");
    ASSERT_TRUE(got.has_value()) << text;
    const double want = std::strtod(token.c_str(), nullptr);
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(*got)) << text;
    else EXPECT_EQ(*got, want) << text;
  }
  // Words that merely contain nan or inf are no numbers; nothing at all is nothing.
  EXPECT_EQ(parse_score("loss 2 banana financial", ""), 2.0);
  EXPECT_FALSE(parse_score("banana", "").has_value());
  EXPECT_FALSE(parse_score("no digits . - + e", "").has_value());
  EXPECT_FALSE(parse_score("", "").has_value());
}

TEST(ScoreParser, LongNumbersNeitherCrashNorLoop) {
  // 30,000 digits: std::regex recursed once per digit and the daemon died of SIGSEGV.
  const std::string digits(30000, '7');
  std::optional<double> big, tiny, frac;
  ASSERT_TRUE(returns_in_child([&] {
    if (parse_score("loss " + digits + "\n", "") != std::numeric_limits<double>::infinity()) std::_Exit(3);
    if (parse_score("loss 0." + std::string(30000, '0') + "1", "") != 0.0) std::_Exit(4);
    // Nested JSON 100,000 deep and a long line: parsed without recursion, no key found.
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    if (parse_score(deep + "\n" + digits, "acc").has_value()) std::_Exit(5);
  }, 20.0));
  EXPECT_EQ(parse_score("x 1" + std::string(400, '0'), ""), std::numeric_limits<double>::infinity());
  EXPECT_EQ(parse_score("x -1e999", ""), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(parse_score("x 0.000000000000000000000000000000000000000000001", ""), 1e-45);
}

TEST(ScoreParser, JsonKeyFromWholeOutputOrLastLine) {
  EXPECT_EQ(parse_score("log line 7\n{\"acc\": 0.5, \"n\": 100}\n", "acc"), 0.5);
  EXPECT_EQ(parse_score("{\"acc\": 0.25,\n \"n\": 1}", "acc"), 0.25);  // a whole pretty-printed object
  EXPECT_EQ(parse_score("{\"acc\": 0.1}\n{\"acc\": 0.2}\n{\"n\": 3}\n", "acc"), 0.2);
  EXPECT_FALSE(parse_score("{\"n\": 100}\n", "acc").has_value());
  EXPECT_FALSE(parse_score("{\"acc\": \"0.5\"}\n", "acc").has_value());
}

TEST(SubstitutePath, PathHoldingThePlaceholderEnds) {
  EXPECT_EQ(substitute_path("eval {path} --again {path}", "/tmp/it's"), "eval '/tmp/it'\\''s' --again '/tmp/it'\\''s'");
  // The quoted path holds "{path}" itself: replacing from the start again looped forever.
  std::string got;
  const fs::path tricky = "/tmp/{path}/m.h5";
  ASSERT_TRUE(returns_in_child([&] {
    if (substitute_path("eval {path} {pat {path}", tricky) != "eval '/tmp/{path}/m.h5' {pat '/tmp/{path}/m.h5'")
      std::_Exit(3);
  }, 5.0));
}

double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

TEST(Jobs, StdoutTailIsBoundedAndReadInLinearTime) {
  test::TempDir dir;
  // 32 MiB on one line, then the score: only the tail is kept, and lines are split without
  // rescanning what came before (that was quadratic: minutes for 100 MiB).
  const Job job{"long-line",
                {"/bin/sh", "-c", "head -c 33554432 /dev/zero | tr '\\0' 'x'; echo; echo 'loss 1.5'"},
                dir.path() / "long.log"};
  std::size_t lines = 0;
  const double rss_before = peak_rss_mib();
  const auto start = std::chrono::steady_clock::now();
  const auto r = run_jobs(std::span(&job, 1), 1, {.on_line = [&](std::size_t, const std::string&) { ++lines; }});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(peak_rss_mib() - rss_before, 16.0) << "MiB held for 32 MiB of output";
  EXPECT_EQ(r[0].exit_code, 0) << r[0].last_error;
  EXPECT_LT(seconds, 8.0);
  EXPECT_LE(r[0].out.size(), kOutputTailBytes);
  EXPECT_EQ(parse_score(r[0].out, ""), 1.5);
  EXPECT_EQ(lines, 2u);
}

TEST(ModelScorer, EveryEvaluationHasItsOwnLog) {
  test::TempDir dir;
  Evaluator ev;
  ev.command = "echo 2.5";
  const ModelScorer scorer(ev, dir.path() / "logs");
  // Two runs with the same label and step, and one path scored by two threads at once.
  const fs::path a = dir.path() / "run1" / "linear_w200" / "step_000000000100.h5";
  const fs::path b = dir.path() / "run2" / "linear_w200" / "step_000000000100.h5";
  std::jthread t1([&] { EXPECT_EQ(scorer(a).score, 2.5); });
  std::jthread t2([&] { EXPECT_EQ(scorer(a).score, 2.5); });
  EXPECT_EQ(scorer(b).score, 2.5);
  t1.join();
  t2.join();
  std::set<std::string> logs;
  for (const auto& e : fs::directory_iterator(dir.path() / "logs")) logs.insert(e.path().filename().string());
  ASSERT_EQ(logs.size(), 3u);
  for (const auto& name : logs) EXPECT_EQ(test::slurp(dir.path() / "logs" / name), "2.5\n") << name;
  std::size_t run1 = 0;
  for (const auto& name : logs) run1 += name.find("run1") != std::string::npos;
  EXPECT_EQ(run1, 2u);
}

}  // namespace
}  // namespace wsm::tools::compare
