// OutputFeed (the daemon's answer to OutputsRequest): numbering, filtering by run, held requests
// answered when an output is written or when their timeout passes, and the limits on held requests.
#include <algorithm>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "merger/daemon/output_feed.h"

namespace wsm::merger {
namespace {

using Clock = OutputFeed::Clock;

v1::OutputsRequest request(std::uint64_t after, const std::string& run, std::uint32_t timeout_ms) {
  v1::OutputsRequest r;
  r.set_after(after);
  r.set_run_id(run);
  r.set_timeout_ms(timeout_ms);
  return r;
}

std::vector<nlohmann::json> records_of(const v1::Envelope& env) {
  std::vector<nlohmann::json> out;
  for (const auto& r : env.outputs_reply().records()) out.push_back(nlohmann::json::parse(r));
  return out;
}

OutputRecord output(const std::string& run, std::int64_t step) {
  OutputRecord r;
  r.run_id = run;
  r.step = step;
  r.path = "p";
  return r;
}

TEST(OutputFeed, AnswersAtOnceWhenNewerOutputsExist) {
  OutputFeed feed("srv");
  const auto now = Clock::now();
  EXPECT_TRUE(feed.add({output("a", 100), output("b", 100), output("a", 200)}).empty());
  auto replies = feed.request("p", request(1, "a", 5000), now);
  ASSERT_EQ(replies.size(), 1u);
  const auto& reply = replies[0].second.outputs_reply();
  EXPECT_EQ(reply.server_id(), "srv");
  EXPECT_EQ(reply.latest(), 3u);
  const auto recs = records_of(replies[0].second);
  ASSERT_EQ(recs.size(), 1u);  // seq 1 is not after 1; seq 2 is run b
  EXPECT_EQ(recs[0]["seq"], 3);
  EXPECT_EQ(recs[0]["step"], 200);
  EXPECT_EQ(records_of(feed.request("p", request(0, "", 0), now)[0].second).size(), 3u);
}

TEST(OutputFeed, HeldUntilAnOutputOfTheRunOrTheTimeout) {
  OutputFeed feed("srv");
  const auto now = Clock::now();
  EXPECT_TRUE(feed.request("p", request(0, "a", 1000), now).empty());
  EXPECT_TRUE(feed.request("q", request(0, "b", 1000), now).empty());
  auto replies = feed.add({output("a", 100)});
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].first, "p");
  EXPECT_EQ(records_of(replies[0].second)[0]["seq"], 1);
  EXPECT_TRUE(feed.expire(now + std::chrono::milliseconds(999)).empty());
  auto timed_out = feed.expire(now + std::chrono::milliseconds(1000));
  ASSERT_EQ(timed_out.size(), 1u);
  EXPECT_EQ(timed_out[0].first, "q");
  EXPECT_EQ(timed_out[0].second.outputs_reply().records_size(), 0);
  EXPECT_EQ(timed_out[0].second.outputs_reply().latest(), 1u);
}

TEST(OutputFeed, HeldRequestsAreBoundedAndTimeoutsCapped) {
  OutputFeed feed("srv");
  const auto now = Clock::now();
  for (int i = 0; i < OutputFeed::kMaxHeldPerPeer; ++i)
    EXPECT_TRUE(feed.request("p", request(0, "", i == 0 ? 5 : UINT32_MAX), now).empty());
  // A fifth of one peer: its own oldest (the 5 ms one) is answered now, empty; the new one waits.
  auto early = feed.request("p", request(0, "", 1000), now);
  ASSERT_EQ(early.size(), 1u);
  EXPECT_EQ(early[0].first, "p");
  EXPECT_EQ(early[0].second.outputs_reply().records_size(), 0);
  EXPECT_TRUE(feed.expire(now + std::chrono::milliseconds(5)).empty());  // that was the 5 ms one
  for (std::size_t i = OutputFeed::kMaxHeldPerPeer; i < OutputFeed::kMaxHeld; ++i)
    EXPECT_TRUE(feed.request("peer" + std::to_string(i), request(0, "", 1000), now).empty());
  // All 256 held: the oldest of all (one of p's) makes room.
  auto room = feed.request("another", request(0, "", 1000), now);
  ASSERT_EQ(room.size(), 1u);
  EXPECT_EQ(room[0].first, "p");
  // UINT32_MAX ms is held for 60 s at most.
  EXPECT_EQ(feed.expire(now + std::chrono::milliseconds(OutputFeed::kMaxTimeoutMs)).size(), OutputFeed::kMaxHeld);
}

// Issue 23 item 11: 64 peers x 4 held requests filled every slot and an honest waiter was refused
// at once (BAD_REQUEST). Now the honest request is held, and answered with the output it waits for.
TEST(OutputFeed, AFloodOfHeldRequestsDoesNotLockAnHonestWaiterOut) {
  OutputFeed feed("srv");
  const auto now = Clock::now();
  for (int peer = 0; peer < 64; ++peer)
    for (int i = 0; i < OutputFeed::kMaxHeldPerPeer; ++i)
      EXPECT_TRUE(feed.request("flood" + std::to_string(peer), request(0, "", 60000), now).empty());
  auto replies = feed.request("honest", request(0, "run", 60000), now);
  ASSERT_EQ(replies.size(), 1u);  // a flood request, answered early
  EXPECT_NE(replies[0].first, "honest");
  auto written = feed.add({output("run", 100)});
  const auto honest = std::find_if(written.begin(), written.end(), [](const auto& r) { return r.first == "honest"; });
  ASSERT_NE(honest, written.end());
  ASSERT_EQ(records_of(honest->second).size(), 1u);
  EXPECT_EQ(records_of(honest->second)[0]["step"], 100);
}

TEST(OutputFeed, RemembersTheLastOutputsOnly) {
  OutputFeed feed("srv");
  std::vector<OutputRecord> many;
  for (std::size_t i = 0; i < OutputFeed::kKeep + 10; ++i) many.push_back(output("a", static_cast<std::int64_t>(i)));
  feed.add(many);
  const auto recs = records_of(feed.request("p", request(0, "", 0), Clock::now())[0].second);
  ASSERT_EQ(recs.size(), OutputFeed::kKeep);
  EXPECT_EQ(recs.front()["seq"], 11);
  EXPECT_EQ(recs.back()["seq"], OutputFeed::kKeep + 10);
}

}  // namespace
}  // namespace wsm::merger
