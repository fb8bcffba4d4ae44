// Sharded runs' bad input and faults (issue 17), on MergerCore without sockets: overlapping or
// missing slices, a rank declaring another global shape or dtype, replicated copies that differ,
// the world size changing mid-run, a rank sending a step twice, a rank dying mid-step. Each: an
// error to every sender of the step, nothing in the window or emitted, and the daemon serves the
// next step. (A daemon restarted while ranks send: test_serve_sharded.cpp.)
#include <gtest/gtest.h>

#include "core_harness.h"
#include "wsm/formats/tensor_slice.h"

namespace wsm::merger {
namespace {

using Shape = std::vector<std::int64_t>;

// One block a rank sends: tensor name, global shape, offsets, lengths; values from the formula.
struct Block {
  std::string name;
  Shape global, offsets, lengths;
  bool replicated = false;
  std::string dtype = "f32";
  float bump = 0;  // added to every value (a differing copy)
};

std::vector<test::OwnedTensor> owned(const std::vector<Block>& blocks, std::int64_t step) {
  std::vector<test::OwnedTensor> out;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const auto& b = blocks[i];
    test::OwnedTensor t{slice_entry_name(b.name, {b.global, b.offsets, b.lengths, b.replicated}), b.lengths, {}};
    t.values.resize(element_count(b.lengths));
    for (std::size_t k = 0; k < t.values.size(); ++k) t.values[k] = test::tensor_value(static_cast<int>(i), step, k) + b.bump;
    out.push_back(std::move(t));
  }
  return out;
}

v1::Envelope group_hello(const std::string& run, int rank, int world, int local, const std::vector<Block>& blocks) {
  auto env = wire::envelope();
  auto* h = env.mutable_hello();
  h->set_protocol_version(wire::kShardedProtocolVersion);
  h->set_run_id(run);
  h->mutable_group()->set_rank(static_cast<std::uint32_t>(rank));
  h->mutable_group()->set_world_size(static_cast<std::uint32_t>(world));
  h->mutable_group()->set_local_world_size(static_cast<std::uint32_t>(local));
  for (const auto& b : blocks) {
    auto* s = h->add_manifest();
    s->set_name(b.name);
    s->set_dtype(b.dtype);
    for (auto d : b.lengths) s->add_shape(d);
    for (auto d : b.global) s->add_global_shape(d);
    for (auto d : b.offsets) s->add_offsets(d);
    s->set_replicated(b.replicated);
  }
  return env;
}

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

TEST(ServeShardedFaults, WorldSizeChangingMidRun) {
  Group g;
  g.hello("a", 0, top());
  g.hello("b", 1, bottom());
  g.part("a", 100, top());
  auto out = g.part("b", 100, bottom());
  ASSERT_TRUE(g.acked(g.replies(out, "a"), 100));
  const auto jobs = g.h.jobs.size();
  g.part("a", 200, top());  // delivered, waiting for rank 1 (step 200 would be due and covered)
  out = g.hello("c", 1, bottom(), 3, 3);
  const auto to_c = g.replies(out, "c"), to_a = g.replies(out, "a");
  EXPECT_EQ(Group::code(to_c), v1::BAD_REQUEST);
  ASSERT_EQ(Group::code(to_a), v1::BAD_REQUEST);  // the pending step's sender is told too
  EXPECT_NE(to_a[0].error().message().find("world size cannot change"), std::string::npos);
  EXPECT_EQ(g.h.core->store().newest_step("run"), 100);
  // Rank 1 (old session) sends step 200 anyway: the step failed, and says so at once.
  const auto late = g.replies(g.part("b", 200, bottom()), "b");
  EXPECT_EQ(Group::code(late), v1::BAD_REQUEST);
  EXPECT_EQ(g.h.core->store().newest_step("run"), 100);
  EXPECT_EQ(g.h.jobs.size(), jobs);  // nothing emitted for step 200
  g.expect_serving();
  EXPECT_GT(g.h.jobs.size(), jobs);  // while a good step 500 is
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
