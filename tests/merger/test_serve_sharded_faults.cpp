// Sharded runs' bad input and faults (issue 17), on MergerCore without sockets: overlapping or
// missing slices, a rank declaring another global shape or dtype, replicated copies that differ,
// the world size changing mid-run, a rank sending a step twice, a rank dying mid-step. Each: an
// error to every sender of the step, nothing in the window or emitted, and the daemon serves the
// next step. (A daemon restarted while ranks send: test_serve_sharded.cpp.)
#include <gtest/gtest.h>

#include "core_harness.h"
#include "sharded_test_util.h"
#include "wsm/formats/tensor_slice.h"

namespace wsm::merger {
namespace {

using test::Block;
using test::group_hello;
using test::owned;

// Two ranks of one node splitting "w" [4,3] by rows and sharing a replicated "b" [3].
std::vector<Block> top() { return {{"w", {4, 3}, {0, 0}, {2, 3}}, {"b", {3}, {0}, {3}, true}}; }
std::vector<Block> bottom() { return {{"w", {4, 3}, {2, 0}, {2, 3}}, {"b", {3}, {0}, {3}, true}}; }

struct Group {
  CoreHarness h{options("linear:100", 100)};
  std::vector<v1::Envelope> replies(const std::vector<Outgoing>& out, const std::string& peer) {
    std::vector<v1::Envelope> r;
    for (const auto& o : out)
      if (o.peer == peer && !o.envelope.has_credit()) r.push_back(o.envelope);
    return r;
  }
  std::vector<Outgoing> hello(const std::string& peer, int rank, const std::vector<Block>& blocks, int world = 2, int local = 2) {
    return h.send(peer, group_hello("run", rank, world, local, blocks));
  }
  // Sends a part; returns everything the core answered, to every peer.
  std::vector<Outgoing> part(const std::string& peer, std::int64_t step, const std::vector<Block>& blocks) {
    std::vector<Outgoing> all;
    auto keep = [&](std::vector<Outgoing> out) { all.insert(all.end(), out.begin(), out.end()); };
    const auto model = owned(blocks, step);
    keep(h.send(peer, test::begin(step)));
    for (const auto& t : model) keep(h.send(peer, test::chunk(step, t.name, 0, test::bytes_of(t)), test::bytes_of(t)));
    keep(h.send(peer, test::end(step, model)));
    return all;
  }
  static v1::ErrorCode code(const std::vector<v1::Envelope>& r) { return error_of(r); }
  bool acked(const std::vector<v1::Envelope>& r, std::int64_t step) {
    for (const auto& e : r)
      if (e.has_ack() && e.ack().step() == step) return true;
    return false;
  }
  // The fault left nothing behind, and a good step still goes through.
  void expect_serving(std::int64_t step = 500) {
    EXPECT_TRUE(h.core->store().entries("run").empty() || h.core->store().newest_step("run") < step);
    hello("g0", 0, top());
    hello("g1", 1, bottom());
    part("g0", step, top());
    auto out = part("g1", step, bottom());
    EXPECT_TRUE(acked(replies(out, "g0"), step) && acked(replies(out, "g1"), step));
    EXPECT_EQ(h.core->store().newest_step("run"), step);
  }
};

TEST(ServeShardedFaults, CompleteStepAcksEveryRankOnceAllDelivered) {
  Group g;
  g.hello("a", 0, top());
  g.hello("b", 1, bottom());
  auto first = g.part("a", 100, top());
  auto r = g.replies(first, "a");
  ASSERT_EQ(r.size(), 1u);
  ASSERT_TRUE(r[0].has_delivered());  // verified, waiting for rank 1
  EXPECT_EQ(r[0].delivered().ranks_expected(), 2u);
  EXPECT_TRUE(g.h.core->store().entries("run").empty());
  auto second = g.part("b", 100, bottom());
  EXPECT_TRUE(g.acked(g.replies(second, "a"), 100));
  EXPECT_TRUE(g.acked(g.replies(second, "b"), 100));
  const auto& entries = g.h.core->store().entries("run");
  ASSERT_EQ(entries.size(), 1u);
  ASSERT_TRUE(entries[0]->part);
  EXPECT_EQ(entries[0]->part->ranks, (std::vector<int>{0, 1}));
  EXPECT_EQ(entries[0]->tensors.size(), 3u);  // two row blocks, the bias once
}

void expect_step_refused(Group& g, const std::vector<Block>& rank0, const std::vector<Block>& rank1,
                         v1::ErrorCode code, const std::string& why) {
  g.hello("a", 0, rank0);
  g.hello("b", 1, rank1);
  g.part("a", 100, rank0);
  auto out = g.part("b", 100, rank1);
  for (const char* peer : {"a", "b"}) {
    const auto r = g.replies(out, peer);
    EXPECT_EQ(Group::code(r), code) << peer;
    for (const auto& e : r)
      if (e.has_error()) {
        EXPECT_NE(e.error().message().find(why), std::string::npos) << e.error().message();
      }
  }
  EXPECT_TRUE(g.h.core->store().entries("run").empty());  // so nothing was planned from it
}

TEST(ServeShardedFaults, OverlappingSlices) {
  Group g;
  auto over = bottom();
  over[0].offsets = {1, 0};
  over[0].lengths = {3, 3};
  expect_step_refused(g, top(), over, v1::SLICE_MISMATCH, "overlap");
  g.h.now += std::chrono::seconds(1);
  g.expect_serving();
}

TEST(ServeShardedFaults, MissingSlices) {
  Group g;
  auto gap = bottom();
  gap[0].offsets = {3, 0};
  gap[0].lengths = {1, 3};
  expect_step_refused(g, top(), gap, v1::SLICE_MISMATCH, "(a gap)");
  g.expect_serving();
}

TEST(ServeShardedFaults, ARankDeclaringAnotherGlobalShapeOrDtype) {
  {
    Group g;
    auto other = bottom();
    other[0].global = {5, 3};
    other[0].offsets = {2, 0};
    expect_step_refused(g, top(), other, v1::SLICE_MISMATCH, "declares f32 [5,3], rank 0 f32 [4,3]");
    g.expect_serving();
  }
  {
    Group g;
    auto other = bottom();
    other[0].dtype = "i32";  // the same bytes, another dtype
    expect_step_refused(g, top(), other, v1::SLICE_MISMATCH, "declares i32 [4,3], rank 0 f32 [4,3]");
    g.expect_serving();
  }
}

TEST(ServeShardedFaults, ReplicatedCopiesThatDiffer) {
  Group g;
  auto other = bottom();
  other[1].bump = 1e-3f;
  expect_step_refused(g, top(), other, v1::SLICE_MISMATCH, "replicated copy differs");
  g.expect_serving();
}

// Issue 23 item 10: a stray Hello with another world size is refused and nothing else changes (it
// failed the live job's pending step before).
TEST(ServeShardedFaults, AStrayHelloWithAnotherWorldSizeIsRefusedAndTheJobGoesOn) {
  Group g;
  g.hello("a", 0, top());
  g.hello("b", 1, bottom());
  g.part("a", 100, top());
  auto out = g.part("b", 100, bottom());
  ASSERT_TRUE(g.acked(g.replies(out, "a"), 100));
  const auto jobs = g.h.jobs.size();
  g.part("a", 200, top());  // delivered, waiting for rank 1 (step 200 is due and covered)
  out = g.hello("c", 1, bottom(), 3, 3);
  const auto to_c = g.replies(out, "c");
  ASSERT_EQ(Group::code(to_c), v1::BAD_REQUEST);
  EXPECT_NE(to_c[0].error().message().find("world size cannot change"), std::string::npos);
  EXPECT_TRUE(g.replies(out, "a").empty());  // the live job hears nothing of it
  out = g.part("b", 200, bottom());
  EXPECT_TRUE(g.acked(g.replies(out, "a"), 200));
  EXPECT_TRUE(g.acked(g.replies(out, "b"), 200));
  EXPECT_EQ(g.h.core->store().newest_step("run"), 200);
  EXPECT_GT(g.h.jobs.size(), jobs);
}

// Issue 23 item 10: one Hello + Bye locked the run id to its world size until a restart (a job
// resumed on fewer nodes, or a single client, was refused). The group goes with its last rank.
TEST(ServeShardedFaults, ARunsGroupIsForgottenOnceNoRankIsConnected) {
  Group g;
  auto bye = wire::envelope();
  bye.mutable_bye();
  g.hello("a", 0, top(), 4, 2);
  g.hello("b", 1, bottom(), 4, 2);
  g.h.send("a", bye);
  EXPECT_EQ(Group::code(g.replies(g.hello("c", 0, top(), 3, 3), "c")), v1::BAD_REQUEST);  // b is still connected
  g.h.send("b", bye);
  // Resumed with two ranks on one node: welcome, and its steps are acked.
  EXPECT_TRUE(g.replies(g.hello("a", 0, top()), "a").at(0).has_welcome());
  EXPECT_TRUE(g.replies(g.hello("b", 1, bottom()), "b").at(0).has_welcome());
  g.part("a", 100, top());
  EXPECT_TRUE(g.acked(g.replies(g.part("b", 100, bottom()), "b"), 100));
  // A group with no checkpoints, left: its run id serves a single client afterwards.
  g.h.send("x", group_hello("solo", 0, 2, 2, top()));
  g.h.send("x", bye);
  const auto single = g.replies(g.h.send("p", test::hello("solo", test::make_model(1, {{3}}))), "p");
  ASSERT_EQ(single.size(), 1u);
  EXPECT_TRUE(single[0].has_welcome());
}

// Issue 23 item 8: a node's ranks each fit the budget, together they do not. Every step failed
// GROUP_INCOMPLETE ("a rank died?") while all ranks waited on OVER_BUDGET; now every rank hears
// OVER_BUDGET naming the budget, and no step is taken in part.
TEST(ServeShardedFaults, ANodesRanksTogetherOverTheBudgetAreToldSo) {
  auto o = options("linear:100", 100);
  o.store.memory_budget = 64 << 10;
  CoreHarness h(o);
  // Four ranks of one node, each a 20 KiB row block of "w" [4*1280, 4] f32: 80 KiB together.
  auto quarter = [](int r) { return std::vector<Block>{{"w", {4 * 1280, 4}, {r * 1280, 0}, {1280, 4}}}; };
  std::vector<std::vector<v1::Envelope>> hellos;
  for (int r = 0; r < 4; ++r) {
    const auto peer = "r" + std::to_string(r);
    hellos.push_back(bodies(h.send(peer, group_hello("run", r, 4, 4, quarter(r))), peer));
  }
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(hellos[r].at(0).has_welcome()) << r;
  // The fourth Hello completes the node: refused, naming the budget.
  ASSERT_EQ(error_of(hellos[3]), v1::OVER_BUDGET);
  EXPECT_NE(hellos[3][0].error().message().find("--memory-budget 65536"), std::string::npos) << hellos[3][0].error().message();
  // The three welcomed ranks send step 100 (the fourth's count as theirs): refused at Begin, all.
  for (int r = 0; r < 3; ++r) {
    const auto peer = "r" + std::to_string(r);
    const auto model = owned(quarter(r), 100);
    const auto replies = bodies(h.send(peer, test::begin(100)), peer);
    ASSERT_EQ(error_of(replies), v1::OVER_BUDGET) << r;
    EXPECT_NE(replies[0].error().message().find("--memory-budget 65536"), std::string::npos) << replies[0].error().message();
    h.send(peer, test::chunk(100, model[0].name, 0, test::bytes_of(model[0])), test::bytes_of(model[0]));
    h.send(peer, test::end(100, model));
  }
  h.now += std::chrono::seconds(5);
  for (const auto& o2 : h.core->expire(h.now))
    EXPECT_NE(o2.envelope.has_error() ? o2.envelope.error().code() : v1::ERROR_UNSPECIFIED, v1::GROUP_INCOMPLETE);
  EXPECT_TRUE(h.core->store().entries("run").empty());
}

// Admission: the node's parts of a step fit together, so the step is taken whole.
TEST(ServeShardedFaults, ANodesRanksThatFitTogetherAreAdmittedAsAGroup) {
  auto o = options("linear:100", 100);
  o.store.memory_budget = 96 << 10;
  CoreHarness h(o);
  auto quarter = [](int r) { return std::vector<Block>{{"w", {4 * 1280, 4}, {r * 1280, 0}, {1280, 4}}}; };
  for (int r = 0; r < 4; ++r) {
    const auto peer = "r" + std::to_string(r);
    ASSERT_TRUE(bodies(h.send(peer, group_hello("run", r, 4, 4, quarter(r))), peer).at(0).has_welcome()) << r;
  }
  std::vector<Outgoing> last;
  for (int r = 0; r < 4; ++r) {
    const auto peer = "r" + std::to_string(r);
    const auto model = owned(quarter(r), 100);
    EXPECT_EQ(error_of(bodies(h.send(peer, test::begin(100)), peer)), v1::ERROR_UNSPECIFIED) << r;
    h.send(peer, test::chunk(100, model[0].name, 0, test::bytes_of(model[0])), test::bytes_of(model[0]));
    last = h.send(peer, test::end(100, model));
  }
  for (int r = 0; r < 4; ++r) {
    const auto acks = bodies(last, "r" + std::to_string(r));
    ASSERT_FALSE(acks.empty());
    EXPECT_TRUE(acks[0].has_ack()) << r;
  }
  EXPECT_EQ(h.core->store().newest_step("run"), 100);
}

TEST(ServeShardedFaults, ARankSendingAStepTwice) {
  Group g;
  g.hello("a", 0, top());
  g.hello("b", 1, bottom());
  g.hello("a2", 0, top());  // a second sender claiming rank 0
  g.part("a", 100, top());
  auto changed = top();
  changed[0].bump = 0.5f;
  auto out = g.part("a2", 100, changed);
  EXPECT_EQ(Group::code(g.replies(out, "a")), v1::SLICE_MISMATCH);
  EXPECT_EQ(Group::code(g.replies(out, "a2")), v1::SLICE_MISMATCH);
  EXPECT_EQ(Group::code(g.replies(g.part("b", 100, bottom()), "b")), v1::SLICE_MISMATCH);  // step 100 failed
  EXPECT_TRUE(g.h.core->store().entries("run").empty());
  // The same bytes again (a client's resend after a stall) are not a fault.
  g.part("a", 200, top());
  g.part("a2", 200, top());
  out = g.part("b", 200, bottom());
  EXPECT_TRUE(g.acked(g.replies(out, "a2"), 200));
  EXPECT_TRUE(g.acked(g.replies(out, "b"), 200));
  EXPECT_EQ(g.h.core->store().newest_step("run"), 200);
}

TEST(ServeShardedFaults, ARankDyingMidStep) {
  Group g;
  g.hello("a", 0, top());
  g.hello("b", 1, bottom());
  g.part("a", 100, top());
  const auto model = owned(bottom(), 100);
  g.h.send("b", test::begin(100));
  g.h.send("b", test::chunk(100, model[0].name, 0, test::bytes_of(model[0])), test::bytes_of(model[0]));
  // Rank 1 goes silent; heartbeats keep rank 0 waiting until the timeout.
  g.h.now += std::chrono::milliseconds(300);
  auto out = g.h.core->expire(g.h.now);
  auto to_a = g.replies(out, "a");
  ASSERT_FALSE(to_a.empty());
  EXPECT_TRUE(to_a[0].has_delivered());
  g.h.now += std::chrono::milliseconds(400);  // past partial_timeout (500 ms) since the last chunk
  out = g.h.core->expire(g.h.now);
  EXPECT_EQ(Group::code(g.replies(out, "a")), v1::GROUP_INCOMPLETE);
  EXPECT_EQ(Group::code(g.replies(out, "b")), v1::GROUP_INCOMPLETE);  // its partial is dropped with the step
  for (const auto& e : g.replies(out, "a"))
    if (e.has_error()) {
      EXPECT_NE(e.error().message().find("ranks 0 delivered, 1 of the 2 local ranks did not"), std::string::npos);
    }
  EXPECT_TRUE(g.h.core->store().entries("run").empty());
  g.expect_serving();
}

// Issue 23 item 2: a version-2 Hello's manifest and slices were not counted (two Hellos of 1M
// one-element tensors took 1.39 GB under a 64 MiB budget); now they count like version 1's, and
// a Hello has at most kMaxHelloTensors entries.
TEST(ServeShardedFaults, ARanksManifestOfSlicesCountsAgainstTheBudget) {
  auto o = options("linear:100", 100);
  o.store.memory_budget = 1 << 20;
  CoreHarness h(o);
  std::vector<Block> many;
  for (int i = 0; i < 20000; ++i) many.push_back({"t" + std::to_string(i), {1}, {0}, {1}});
  // The reference: the same tensors as a version-1 manifest (2 MB in RAM, 80 KB a checkpoint).
  std::vector<test::OwnedTensor> whole;
  for (const auto& b : many) whole.push_back({b.name, b.lengths, {0.f}});
  EXPECT_EQ(error_of(bodies(h.send("v1", test::hello("plain", whole)), "v1")), v1::OVER_BUDGET);
  const auto refused = bodies(h.send("v2", group_hello("run", 0, 2, 1, many)), "v2");
  ASSERT_EQ(error_of(refused), v1::OVER_BUDGET);
  EXPECT_NE(refused[0].error().message().find("manifest of slices"), std::string::npos) << refused[0].error().message();
  many.resize(1000);  // about 300 KB of manifest and slices in RAM: fits, twice
  EXPECT_TRUE(bodies(h.send("a", group_hello("run", 0, 2, 2, many)), "a").at(0).has_welcome());
  EXPECT_TRUE(bodies(h.send("b", group_hello("run", 1, 2, 2, many)), "b").at(0).has_welcome());
  // The sessions' slices are counted until they leave: a third rank's do not fit beside them...
  std::vector<Block> more;
  for (int i = 0; i < 2000; ++i) more.push_back({"u" + std::to_string(i), {1}, {0}, {1}});
  EXPECT_EQ(error_of(bodies(h.send("c", group_hello("other", 0, 1, 1, more)), "c")), v1::OVER_BUDGET);
  auto bye = wire::envelope();
  bye.mutable_bye();
  h.send("a", bye);
  h.send("b", bye);
  // ...and do once they left.
  EXPECT_TRUE(bodies(h.send("c", group_hello("other", 0, 1, 1, more)), "c").at(0).has_welcome());
  // Past the cap on entries per Hello: refused before anything is built.
  std::vector<Block> over(static_cast<std::size_t>(kMaxHelloTensors) + 1, Block{"x", {1}, {0}, {1}});
  const auto capped = bodies(h.send("d", group_hello("big", 0, 1, 1, over)), "d");
  ASSERT_EQ(error_of(capped), v1::BAD_REQUEST);
  EXPECT_NE(capped[0].error().message().find("limit of " + std::to_string(kMaxHelloTensors)), std::string::npos);
}

TEST(ServeShardedFaults, PlainHelloForAShardedRunAndBadGroups) {
  Group g;
  g.hello("a", 0, top());
  EXPECT_EQ(Group::code(g.replies(g.h.send("p", test::hello("run", test::make_model(1, {{3}}))), "p")), v1::BAD_REQUEST);
  EXPECT_EQ(Group::code(g.replies(g.h.send("x", group_hello("run", 2, 2, 2, top())), "x")), v1::BAD_REQUEST);  // rank >= world
  auto past = top();
  past[0].offsets = {3, 0};  // rows 3..4 of 4
  EXPECT_EQ(Group::code(g.replies(g.h.send("y", group_hello("run", 1, 2, 2, past)), "y")), v1::BAD_REQUEST);
}

TEST(ServeShardedFaults, ARankChangingItsSlicesMidRun) {
  Group g;
  g.hello("a", 0, top());
  g.hello("b", 1, bottom());
  g.part("a", 100, top());
  ASSERT_TRUE(g.acked(g.replies(g.part("b", 100, bottom()), "b"), 100));
  // Rows 0..2 and 2..4 become 0..1 and 1..4: they tile, but the layout differs from the window's.
  auto top1 = top(), bottom1 = bottom();
  top1[0].lengths = {1, 3};
  bottom1[0].offsets = {1, 0};
  bottom1[0].lengths = {3, 3};
  g.hello("a", 0, top1);
  g.hello("b", 1, bottom1);
  g.part("a", 200, top1);
  auto out = g.part("b", 200, bottom1);
  for (const char* peer : {"a", "b"}) EXPECT_EQ(Group::code(g.replies(out, peer)), v1::SLICE_MISMATCH) << peer;
  EXPECT_EQ(g.h.core->store().newest_step("run"), 100);
}

}  // namespace
}  // namespace wsm::merger
