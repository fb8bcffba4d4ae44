// The `wsm serve` and `wsm status` commands as processes: status --json reports the window, and
// SIGTERM stops the daemon cleanly (exit 0) with every output complete and nothing temporary left.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serve_test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {

TEST(ServeCommand, StatusJsonAndCleanExitOnSigterm) {
  const std::string wsm = std::string(WSM_BINARY_DIR) + "/wsm";
  if (::access(wsm.c_str(), X_OK) != 0) GTEST_SKIP() << wsm << " is not built";
  const auto dir = test::temp_dir("cmd");
  const std::string endpoint = test::free_loopback_endpoint();
  const pid_t pid = test::spawn_wsm_serve(dir, endpoint,
                                          {"--out", (dir / "out").string(), "--emulate", "linear@200", "1-sqrt@300",
                                           "--every", "100", "--store", (dir / "store").string()});
  ASSERT_GT(pid, 0);
  ClientOptions co;
  co.endpoint = endpoint;
  co.run_id = "cmd";
  {
    MergerClient client(co);
    for (std::int64_t step = 100; step <= 500; step += 100) {
      auto model = test::make_model(step, {{256, 64}});
      client.send_checkpoint(step, step * 10, 1e-3, test::views(model));
    }
    client.flush();
  }
  const auto json = test::run_command(wsm + " status --connect " + endpoint + " --json");
  ASSERT_EQ(json.rc, 0) << json.out << json.err;
  const auto st = nlohmann::json::parse(json.out);
  EXPECT_EQ(st["checkpoints_received"], "5");  // protobuf's JSON prints 64-bit integers as strings
  ASSERT_FALSE(st["window"].empty());
  EXPECT_EQ(st["window"].back()["step"], "500");
  const auto text = test::run_command(wsm + " status --connect " + endpoint);
  EXPECT_EQ(text.rc, 0);
  EXPECT_NE(text.out.find("received 5 checkpoints"), std::string::npos) << text.out;

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int wstatus = 0;
  pid_t done = 0;
  for (int i = 0; i < 200 && done == 0; ++i) {
    done = ::waitpid(pid, &wstatus, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &wstatus, 0);
    FAIL() << "wsm serve did not exit within 10 s of SIGTERM";
  }
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  std::ifstream log(dir / "serve.log");
  const std::string log_text((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(log_text.find("merger stopped"), std::string::npos) << log_text;
  EXPECT_NE(log_text.find("received run 'cmd' step 500"), std::string::npos);
  std::ifstream index(dir / "out" / "index.json");
  ASSERT_TRUE(index);
  const auto idx = nlohmann::json::parse(index);
  for (const auto& rec : idx["outputs"]) EXPECT_TRUE(std::filesystem::exists(rec["path"].get<std::string>()));
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir))
    EXPECT_EQ(f.path().string().find(".tmp-"), std::string::npos) << f.path();

  const auto help = test::run_command(wsm + " serve --help");
  EXPECT_NE(help.out.find("Example"), std::string::npos);
}

}  // namespace
}  // namespace wsm
