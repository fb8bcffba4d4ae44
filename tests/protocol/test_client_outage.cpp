// The C++ client's outage policies (wsm/client/client.h, OutagePolicy) with no merger at all: a
// loopback port that nothing listens on. Every wait is bounded; the figures asserted come from the
// options (reconnect and stall timeouts), not from tuning.
#include <gtest/gtest.h>

#include "tests/merger/serve_test_util.h"

namespace wsm {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

ClientOptions absent_merger(OutagePolicy policy) {
  ClientOptions co;
  co.endpoint = test::free_loopback_endpoint();  // nothing listens there
  co.policy = policy;
  co.queue_bytes = 2048;  // two snapshots of 1024 bytes
  co.stall_timeout_ms = 200;
  co.reconnect_timeout_ms = 800;
  return co;
}

TEST(ClientOutage, PolicyNamesRoundTripAndUnknownOnesAreNamed) {
  for (const auto p : {OutagePolicy::drop_oldest, OutagePolicy::wait, OutagePolicy::fail_fast})
    EXPECT_EQ(parse_outage_policy(outage_policy_name(p)), p);
  try {
    parse_outage_policy("drop_newest");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("drop_newest"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("drop-oldest, wait, fail-fast"), std::string::npos) << e.what();
  }
}

// drop-oldest: the trainer never waits; a full queue loses its oldest waiting checkpoint; what is
// left fails about one reconnect timeout after it was queued, together, not one timeout each.
TEST(ClientOutage, DropOldestNeverBlocksAndQueuedCheckpointsFailTogether) {
  const ClientOptions co = absent_merger(OutagePolicy::drop_oldest);
  MergerClient client(co);
  auto model = test::make_model(1, {{256}});  // 1024 bytes
  const auto start = Clock::now();
  double slowest = 0;
  for (int step = 1; step <= 6; ++step) {
    const auto t = Clock::now();
    client.send_checkpoint(step, step, 1e-3, test::views(model));
    slowest = std::max(slowest, seconds_since(t));
  }
  EXPECT_LT(slowest, 0.2);
  EXPECT_EQ(client.stats().checkpoints_dropped, 4u);  // the queue holds two: 2..5 made room in turn
  try {
    client.flush();
    FAIL() << "flush reported nothing";
  } catch (const Error& e) {
    const std::string what = e.what();
    // Which ones go depends on whether the sender thread had taken step 1 yet (it stays in flight).
    for (int step = 3; step <= 6; ++step)
      EXPECT_NE(what.find("dropped undelivered to make room for step " + std::to_string(step)), std::string::npos) << what;
    EXPECT_NE(what.find("step 6 not delivered"), std::string::npos) << what;
    EXPECT_NE(what.find("policy drop-oldest"), std::string::npos) << what;
  }
  const double took = seconds_since(start);
  // One reconnect timeout plus the attempt under way when it ran out (a hello waits one stall);
  // one timeout per checkpoint in turn would be 1.6 s and more.
  EXPECT_LT(took, (co.reconnect_timeout_ms + 2 * co.stall_timeout_ms) / 1000.0 + 0.3);
  EXPECT_GE(took, co.reconnect_timeout_ms / 1000.0);
  EXPECT_EQ(client.stats().checkpoints_failed, 2u);
  EXPECT_EQ(client.stats().checkpoints_acked, 0u);
}

// fail-fast: a checkpoint not taken at the first try fails, and the next call says so.
TEST(ClientOutage, FailFastFailsAtTheFirstTryAndTheNextCallThrows) {
  MergerClient client(absent_merger(OutagePolicy::fail_fast));
  auto model = test::make_model(1, {{256}});
  client.send_checkpoint(1, 1, 1e-3, test::views(model));
  ASSERT_TRUE(test::wait_for([&] { return client.stats().checkpoints_failed == 1; }, 5000));
  try {
    client.send_checkpoint(2, 2, 1e-3, test::views(model));
    FAIL() << "the failed step 1 was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 1 not delivered at the first try"), std::string::npos) << e.what();
  }
  EXPECT_EQ(client.stats().reconnects, 0u);  // no retry
}

// wait: nothing is dropped and send_checkpoint blocks on a full queue, yet close() gives up after
// reconnect + stall timeout, fails what is left, and does not throw.
TEST(ClientOutage, WaitLosesNothingButCloseIsBounded) {
  const ClientOptions co = absent_merger(OutagePolicy::wait);
  MergerClient client(co);
  auto model = test::make_model(1, {{256}});
  client.send_checkpoint(1, 1, 1e-3, test::views(model));
  client.send_checkpoint(2, 2, 1e-3, test::views(model));
  std::this_thread::sleep_for(std::chrono::milliseconds(co.reconnect_timeout_ms + co.stall_timeout_ms));
  EXPECT_EQ(client.stats().checkpoints_failed, 0u);  // past the reconnect timeout: still retried
  const auto start = Clock::now();
  client.close();
  EXPECT_LT(seconds_since(start), (co.reconnect_timeout_ms + 2 * co.stall_timeout_ms) / 1000.0 + 0.3);
  EXPECT_EQ(client.stats().checkpoints_failed, 2u);
  EXPECT_EQ(client.stats().checkpoints_dropped, 0u);
}

}  // namespace
}  // namespace wsm
