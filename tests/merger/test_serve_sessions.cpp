// Issue 12: Hello sessions from unauthenticated loopback peers are bounded. Past max_sessions the
// longest idle session not receiving a checkpoint is closed (its peer gets NO_SESSION and says
// hello again); when every session is receiving one, the Hello is refused (OVER_BUDGET). A run
// nobody uses any more is forgotten, and manifests count against the memory budget.
#include <gtest/gtest.h>

#include "core_harness.h"
#include "serve_test_util.h"

namespace wsm::merger {
namespace {

using test::make_model;

const std::vector<std::vector<std::int64_t>> kShapes{{4, 3}, {5}};

std::uint32_t peers(CoreHarness& h) {
  auto st = wire::envelope();
  st.mutable_status_request();
  return h.send("status", st).at(0).envelope.status_reply().peers();
}

TEST(ServeSessions, PastTheCapTheLongestIdleSessionGoesAndBusyOnesStay) {
  auto o = options();
  o.max_sessions = 3;
  CoreHarness h(o);
  auto model = make_model(100, kShapes);
  for (const std::string p : {"a", "b", "c"}) {
    ASSERT_TRUE(h.send(p, test::hello("run-" + p, model)).at(0).envelope.has_welcome());
    h.now += std::chrono::seconds(1);
  }
  h.send("b", test::begin(100));  // b is receiving a checkpoint; a was idle longest
  h.now += std::chrono::seconds(1);
  ASSERT_TRUE(h.send("d", test::hello("run-d", model)).at(0).envelope.has_welcome());
  EXPECT_EQ(peers(h), 3u);  // was: 4, and without bound
  EXPECT_EQ(error_of(h.checkpoint("a", 100, model)), v1::NO_SESSION);  // a says hello again
  // b's partial survived and completes; c kept its session.
  for (const auto& t : model) h.send("b", test::chunk(100, t.name, 0, test::bytes_of(t)), test::bytes_of(t));
  EXPECT_TRUE(bodies(h.send("b", test::end(100, model)), "b").at(0).has_ack());
  EXPECT_TRUE(h.checkpoint("c", 100, model).at(0).has_ack());
}

TEST(ServeSessions, WhenEverySessionIsReceivingAHelloIsRefusedClearly) {
  auto o = options();
  o.max_sessions = 2;
  CoreHarness h(o);
  auto model = make_model(100, kShapes);
  for (const std::string p : {"a", "b"}) {
    ASSERT_TRUE(h.send(p, test::hello("run-" + p, model)).at(0).envelope.has_welcome());
    h.send(p, test::begin(100));
  }
  auto refused = h.send("c", test::hello("run-c", model));
  ASSERT_EQ(refused.size(), 1u);
  ASSERT_TRUE(refused[0].envelope.has_error());  // was: welcomed, a third session
  EXPECT_EQ(refused[0].envelope.error().code(), v1::OVER_BUDGET);
  EXPECT_NE(refused[0].envelope.error().message().find("2 sessions are open"), std::string::npos)
      << refused[0].envelope.error().message();
  // Once one finishes, there is room again.
  for (const auto& t : model) h.send("a", test::chunk(100, t.name, 0, test::bytes_of(t)), test::bytes_of(t));
  ASSERT_TRUE(bodies(h.send("a", test::end(100, model)), "a").at(0).has_ack());
  EXPECT_TRUE(h.send("c", test::hello("run-c", model)).at(0).envelope.has_welcome());
}

TEST(ServeSessions, ARunForgottenToMakeRoomForItsOwnHelloIsCountedAgain) {
  // One session at most: b's Hello for run R closes a's session, R's only one, so R is forgotten
  // and b's Hello starts it afresh. R's manifest must be counted again then (was: counted as the
  // known run's, 0 bytes, and subtracted when b left: the byte count wrapped below zero and every
  // later Hello with a smaller manifest was refused OVER_BUDGET).
  auto o = options();
  o.max_sessions = 1;
  CoreHarness h(o);
  auto model = make_model(100, kShapes);
  ASSERT_TRUE(h.send("a", test::hello("R", model)).at(0).envelope.has_welcome());
  ASSERT_TRUE(h.send("b", test::hello("R", model)).at(0).envelope.has_welcome());
  auto bye = wire::envelope();
  bye.mutable_bye();
  h.send("b", bye);
  auto small = make_model(100, {{4, 3}});
  ASSERT_TRUE(h.send("c", test::hello("S", small)).at(0).envelope.has_welcome());
  EXPECT_TRUE(h.checkpoint("c", 100, small).at(0).has_ack());
}

TEST(ServeSessions, ThousandsOfHellosForNewRunsKeepSessionsAndManifestsBounded) {
  auto o = options();
  o.max_sessions = 16;
  o.store.memory_budget = 64 << 10;  // a few hundred manifests of this size; 5000 would not fit
  CoreHarness h(o);
  auto model = make_model(100, kShapes);
  for (int i = 0; i < 5000; ++i) {
    const auto id = "squat-" + std::to_string(i);
    ASSERT_TRUE(h.send(id, test::hello(id, model)).at(0).envelope.has_welcome()) << i;
  }
  EXPECT_EQ(peers(h), 16u);
  // The runs of closed sessions were forgotten: an honest run still fits the budget.
  ASSERT_TRUE(h.send("honest", test::hello("honest", model)).at(0).envelope.has_welcome());
  EXPECT_TRUE(h.checkpoint("honest", 100, model).at(0).has_ack());
  // A run with a checkpoint in the window is not forgotten when its session goes: a new session
  // must still send the manifest it started with.
  auto bye = wire::envelope();
  bye.mutable_bye();
  h.send("honest", bye);
  auto other = make_model(100, {{3}});
  EXPECT_EQ(error_of(bodies(h.send("again", test::hello("honest", other)), "again")), v1::MANIFEST_MISMATCH);
}

TEST(ServeSessions, ManifestsCountAgainstTheMemoryBudget) {
  auto o = options();
  o.store.memory_budget = 64 << 10;
  CoreHarness h(o);
  // 2000 one-element tensors: an 8 KB checkpoint, but a manifest that takes far more RAM than that.
  std::vector<std::vector<std::int64_t>> shapes(2000, std::vector<std::int64_t>{1});
  auto many = make_model(100, shapes);
  auto refused = bodies(h.send("a", test::hello("many", many)), "a");
  EXPECT_EQ(error_of(refused), v1::OVER_BUDGET);  // was: welcomed
  EXPECT_NE(refused.at(0).error().message().find("manifest"), std::string::npos) << refused.at(0).error().message();
  // A small manifest still fits.
  EXPECT_TRUE(h.send("b", test::hello("small", make_model(100, kShapes))).at(0).envelope.has_welcome());
}

}  // namespace
}  // namespace wsm::merger
