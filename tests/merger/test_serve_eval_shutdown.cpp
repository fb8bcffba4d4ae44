// Issue 23, item 6: a hung `--eval-cmd` cannot hold `wsm serve` past SIGTERM. A service manager's
// stop used to wait without limit for the scoring command, with the store flush behind it, so the
// final SIGKILL lost acknowledged checkpoints. Now the store is flushed first, the scorer's process
// group is killed at shutdown, and `--eval-timeout` ends a scoring command that takes too long.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serve_test_util.h"
#include "tests/proc_stat.h"
#include "tests/run_command.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;

void send_steps(const std::string& endpoint, std::int64_t from, std::int64_t to) {
  ClientOptions co;
  co.endpoint = endpoint;
  co.run_id = "hung";
  MergerClient client(co);
  for (std::int64_t step = from; step <= to; step += 100) {
    auto model = test::make_model(step, {{64, 32}});
    client.send_checkpoint(step, step * 10, 1e-3, test::views(model));
  }
  client.flush();  // every checkpoint acknowledged
}

// A process that exists and is not a zombie.
bool running(pid_t pid) {
  const std::string stat = test::proc_stat(pid);
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

class ServeEvalShutdown : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
    dir_ = test::temp_dir("evalstop");
    endpoint_ = test::free_loopback_endpoint();
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (scorer_ > 0) ::kill(scorer_, SIGKILL);
  }
  fs::path dir_;
  std::string endpoint_;
  pid_t pid_ = -1, scorer_ = -1;
};

TEST_F(ServeEvalShutdown, SigtermKillsHungScorerAndKeepsAcknowledgedCheckpoints) {
  const fs::path pidfile = dir_ / "scorer.pid", store = dir_ / "store";
  // The scoring command hangs in a child of its shell, as a Python evaluator's worker would.
  pid_ = test::spawn_wsm_serve(dir_, endpoint_,
                               {"--out", (dir_ / "out").string(), "--emulate", "linear:200", "--every", "100",
                                "--store", store.string(), "--eval-raw", "false", "--eval-cmd",
                                "sleep 600 & echo $! > '" + pidfile.string() + "'; wait"});
  ASSERT_GT(pid_, 0);
  send_steps(endpoint_, 100, 300);  // the output at 300 starts the hung evaluation
  ASSERT_TRUE(test::wait_for([&] { return fs::exists(pidfile) && fs::file_size(pidfile) > 0; }, 20000))
      << test::slurp(dir_ / "serve.log");
  scorer_ = std::stoi(test::slurp(pidfile));
  send_steps(endpoint_, 400, 600);  // acknowledged while the evaluation hangs

  const auto start = std::chrono::steady_clock::now();
  ::kill(pid_, SIGTERM);  // to the daemon only, as `kill PID` does
  int status = 0;
  bool exited = test::wait_for([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, 15000);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(exited) << "SIGTERM waited for the hung scoring command\n" << test::slurp(dir_ / "serve.log");
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_LT(seconds, 10.0);
  EXPECT_TRUE(test::wait_for([&] { return !running(scorer_); }, 5000)) << "the scorer's child outlived the daemon";
  // Every acknowledged checkpoint reached the store (the window keeps the last 3: 400..600).
  for (std::int64_t step : {400, 500, 600}) {
    char name[64];
    std::snprintf(name, sizeof name, "step_%012lld.h5", static_cast<long long>(step));
    EXPECT_TRUE(fs::exists(store / "hung" / name)) << name;
  }
}

TEST_F(ServeEvalShutdown, EvalTimeoutEndsAScoringCommand) {
  const fs::path out = dir_ / "out";
  pid_ = test::spawn_wsm_serve(dir_, endpoint_,
                               {"--out", out.string(), "--emulate", "linear:200", "--every", "100", "--eval-raw",
                                "false", "--eval-timeout", "1", "--eval-cmd", "sleep 600; echo 1"});
  ASSERT_GT(pid_, 0);
  send_steps(endpoint_, 100, 300);
  nlohmann::json rec;
  ASSERT_TRUE(test::wait_for(
      [&] {
        std::ifstream in(out / "index.json");
        const auto idx = nlohmann::json::parse(in, nullptr, false);
        if (!idx.is_object() || idx["outputs"].empty() || !idx["outputs"][0].contains("eval")) return false;
        rec = idx["outputs"][0]["eval"];
        return true;
      },
      15000))
      << test::slurp(dir_ / "serve.log");
  EXPECT_FALSE(rec.contains("score"));
  EXPECT_NE(rec["error"].get<std::string>().find("timed out after 1 s"), std::string::npos) << rec.dump();
  EXPECT_LT(rec["seconds"].get<double>(), 5.0);
}

}  // namespace
}  // namespace wsm
