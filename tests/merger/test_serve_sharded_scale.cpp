// Issue 23 item 1: a large node of a sharded job. 256 ranks x 300 tensors in an FSDP layout (every
// tensor split across all ranks, half along dimension 0 and half along dimension 1, one of them in
// 16,384 column blocks) complete a step in seconds, and no message waits for the combination: each
// call into the core, and another peer's status round trip, stays under 0.1 s throughout (but the
// step's commit, which adds a checkpoint of 93,000 entries to the window and plans its outputs on
// the message thread: linear, under 0.25 s). Before,
// the tiling kept every block of a dimension-1 split "open" (quadratic) and ran on the message
// thread. The 256 ranks are simulated through MergerCore's API (256 sockets are too heavy for a
// 2-core CI machine); 32 ranks (512 column blocks each) go through real loopback sockets against
// a running Server.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core_harness.h"
#include "merger/daemon/task_thread.h"
#include "sharded_test_util.h"

namespace wsm::merger {
namespace {

using test::Block;
using SteadyClock = std::chrono::steady_clock;

constexpr int kTensors = 300;
constexpr int kEmbeddingBlocks = 16384;  // of tensor 0, all ranks together

// Rank r's blocks: tensor t is [2*world, 3] split by rows (even t) or [3, 2*world] by columns
// (odd t); tensor 0 is instead [4, 16384] in one-column-wide blocks, 16384/world per rank.
std::vector<Block> rank_blocks(int rank, int world) {
  std::vector<Block> blocks;
  const std::int64_t per_rank = kEmbeddingBlocks / world;
  for (std::int64_t b = 0; b < per_rank; ++b) blocks.push_back({"emb", {4, kEmbeddingBlocks}, {0, rank * per_rank + b}, {4, 1}});
  for (int t = 1; t < kTensors; ++t) {
    const std::string name = "layer" + std::to_string(t) + ".weight";
    if (t % 2 == 0) blocks.push_back({name, {2 * world, 3}, {2 * rank, 0}, {2, 3}});
    else blocks.push_back({name, {3, 2 * world}, {0, 2 * rank}, {3, 2}});
  }
  return blocks;
}

double seconds_since(SteadyClock::time_point t0) { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); }

// The node checkpoint holds every rank's blocks with the bytes the rank sent: checked against the
// blocks regenerated from the formula, and each tensor's blocks cover its elements exactly.
void expect_node_checkpoint(const StoredCheckpoint& c, int world, std::int64_t step) {
  ASSERT_TRUE(c.part);
  EXPECT_EQ(c.part->ranks.size(), static_cast<std::size_t>(world));
  ASSERT_EQ(c.tensors.size(), static_cast<std::size_t>(kEmbeddingBlocks + world * (kTensors - 1)));
  std::map<std::string, std::uint64_t> covered;
  for (const auto& e : c.part->entries) covered[e.name] += element_count(e.slice.lengths);
  EXPECT_EQ(covered.size(), static_cast<std::size_t>(kTensors));
  for (const auto& [name, n] : covered) EXPECT_EQ(n, name == "emb" ? 4u * kEmbeddingBlocks : 6u * world) << name;
  for (int rank : {0, world / 2, world - 1}) {
    const auto sent = test::owned(rank_blocks(rank, world), step);
    for (std::size_t i : {std::size_t{0}, static_cast<std::size_t>(kEmbeddingBlocks / world + 7), sent.size() - 1}) {
      const auto at = std::find_if(c.tensors.begin(), c.tensors.end(), [&](const TensorInfo& t) { return t.name == sent[i].name; });
      ASSERT_NE(at, c.tensors.end()) << sent[i].name;
      std::vector<std::byte> held;
      for (const auto& p : c.data[static_cast<std::size_t>(at - c.tensors.begin())].pieces) held.insert(held.end(), p.bytes.begin(), p.bytes.end());
      const auto want = test::bytes_of(sent[i]);
      EXPECT_TRUE(std::equal(held.begin(), held.end(), want.begin(), want.end())) << sent[i].name;
    }
  }
}

TEST(ServeShardedScale, TwoHundredFiftySixRanksThroughTheCore) {
  constexpr int world = 256;
  constexpr std::int64_t step = 100;
  auto o = options("linear:100", 100);
  o.partial_timeout = std::chrono::seconds(60);
  o.max_sessions = world + 8;
  TaskThread combiner;
  std::vector<EmissionJob> jobs;
  MergerCore core(o, [&](EmissionJob j) { jobs.push_back(std::move(j)); },
                  {.combine = [&](std::function<void()> task) { combiner.post(std::move(task)); }});
  double slowest = 0;
  std::string slowest_call;
  double commit_seconds = 0;
  auto timed = [&](SteadyClock::time_point t0, const std::string& what) {
    if (seconds_since(t0) > slowest) slowest = seconds_since(t0), slowest_call = what;
  };
  // Every call into the core is timed: none may hold the message thread.
  auto call = [&](const std::string& peer, v1::Envelope env, std::span<const std::byte> payload = {}) {
    wire::Message m;
    m.peer = peer;
    m.envelope = std::move(env);
    if (m.envelope.has_chunk()) m.payload = zmq::message_t(payload.data(), payload.size());
    const auto t0 = SteadyClock::now();
    const auto what = peer + " " + std::to_string(static_cast<int>(m.envelope.body_case()));
    auto out = core.handle(std::move(m), SteadyClock::now());
    timed(t0, what);
    return out;
  };
  auto status_round_trip = [&] {
    auto st = wire::envelope();
    st.mutable_status_request();
    const auto out = call("status", st);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].envelope.has_status_reply());
  };
  std::vector<std::vector<test::OwnedTensor>> parts;
  for (int r = 0; r < world; ++r) parts.push_back(test::owned(rank_blocks(r, world), step));
  const auto t0 = SteadyClock::now();
  std::set<std::string> acked;
  auto note = [&](const std::vector<Outgoing>& out) {
    for (const auto& m : out) {
      ASSERT_FALSE(m.envelope.has_error()) << m.envelope.error().message();
      if (m.envelope.has_ack()) acked.insert(m.peer);
    }
  };
  for (int r = 0; r < world; ++r) {
    const auto peer = "rank" + std::to_string(r);
    const auto replies = call(peer, test::group_hello("fsdp", r, world, world, rank_blocks(r, world)));
    ASSERT_TRUE(replies.at(0).envelope.has_welcome()) << replies.at(0).envelope.DebugString();
  }
  for (int r = 0; r < world; ++r) {
    const auto peer = "rank" + std::to_string(r);
    note(call(peer, test::begin(step)));
    for (const auto& t : parts[r]) note(call(peer, test::chunk(step, t.name, 0, test::bytes_of(t)), test::bytes_of(t)));
    note(call(peer, test::end(step, parts[r])));
    status_round_trip();
  }
  // The combination runs on its thread; the message loop serves on meanwhile.
  while (acked.size() < static_cast<std::size_t>(world) && seconds_since(t0) < 60) {
    const auto p0 = SteadyClock::now();
    const auto out = core.pump();
    // The pump that acks is the step's commit: the window takes the node checkpoint and the
    // outputs are planned, linear in its 93,000 entries (timed apart, below).
    const bool commit = std::any_of(out.begin(), out.end(), [](const Outgoing& o) { return o.envelope.has_ack(); });
    if (commit) commit_seconds = seconds_since(p0);
    else timed(p0, "pump");
    note(out);
    status_round_trip();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const double took = seconds_since(t0);
  EXPECT_EQ(acked.size(), static_cast<std::size_t>(world));
  EXPECT_LT(took, 20.0);
  EXPECT_LT(slowest, 0.1) << "a call into the core held the message thread: " << slowest_call;
  EXPECT_LT(commit_seconds, 0.25);
  ASSERT_EQ(core.store().entries("fsdp").size(), 1u);
  expect_node_checkpoint(*core.store().entries("fsdp").back(), world, step);
  std::printf("256 ranks x %d tensors: step acked in %.2f s, slowest call %.1f ms (%s), the commit %.1f ms\n", kTensors, took,
              slowest * 1e3, slowest_call.c_str(), commit_seconds * 1e3);
}

TEST(ServeShardedScale, ThirtyTwoRanksOnLoopbackWhileAnotherPeerAsksStatus) {
  constexpr int world = 32;
  constexpr std::int64_t step = 100;
  auto opts = test::server_options(test::temp_dir("scale-out"), "linear:100", 100);
  opts.core.partial_timeout = std::chrono::seconds(60);
  test::ServerThread server(opts);
  std::vector<std::unique_ptr<test::RawPeer>> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.push_back(std::make_unique<test::RawPeer>(server.endpoint()));
    ranks.back()->send(test::group_hello("fsdp", r, world, world, rank_blocks(r, world)));
    const auto w = ranks.back()->next(10000);
    ASSERT_TRUE(w && w->has_welcome()) << r;
  }
  std::atomic<bool> done{false};
  std::atomic<double> slowest_rtt{0};
  std::atomic<int> round_trips{0};
  std::jthread pinger([&] {
    test::RawPeer peer(server.endpoint());
    while (!done) {
      auto st = wire::envelope();
      st.mutable_status_request();
      const auto t0 = SteadyClock::now();
      peer.send(st);
      const auto r = peer.next(5000);
      const double rtt = r && r->has_status_reply() ? seconds_since(t0) : 5.0;
      slowest_rtt = std::max(slowest_rtt.load(), rtt);
      ++round_trips;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  const auto t0 = SteadyClock::now();
  for (int r = 0; r < world; ++r) {
    const auto part = test::owned(rank_blocks(r, world), step);
    ranks[r]->send(test::begin(step));
    for (const auto& t : part) ranks[r]->send(test::chunk(step, t.name, 0, test::bytes_of(t)), test::bytes_of(t));
    ranks[r]->send(test::end(step, part));
  }
  int acks = 0;
  for (int r = 0; r < world; ++r)
    while (true) {
      const auto m = ranks[r]->next(30000);
      ASSERT_TRUE(m) << "rank " << r << " heard nothing";
      ASSERT_FALSE(m->has_error()) << m->error().message();
      if (m->has_ack()) {
        ++acks;
        break;
      }
    }
  const double took = seconds_since(t0);
  done = true;
  pinger.join();
  EXPECT_EQ(acks, world);
  EXPECT_LT(took, 20.0);
  EXPECT_GT(round_trips.load(), 3);
  EXPECT_LT(slowest_rtt.load(), 0.1) << "another peer's status waited";
  std::printf("32 ranks x %d tensors on loopback: step acked in %.2f s, %d status round trips, slowest %.1f ms\n", kTensors,
              took, round_trips.load(), slowest_rtt.load() * 1e3);
}

}  // namespace
}  // namespace wsm::merger
