// MergerCore without sockets: handshake, credit, complete checkpoints, every fault of issue 5, and
// emission planning against schedules/ (select_window) as the reference.
#include <algorithm>

#include <gtest/gtest.h>
#include <xxhash.h>

#include "merger/daemon/daemon_core.h"
#include "core_harness.h"
#include "serve_test_util.h"

namespace wsm::merger {
namespace {

using test::make_model;

const std::vector<std::vector<std::int64_t>> kShapes{{4, 3}, {5}};

TEST(ServeCore, HelloGrantsCreditAndCheckpointIsAcked) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  auto out = h.send("a", test::hello("run", model));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].envelope.has_welcome());
  EXPECT_EQ(out[0].envelope.welcome().credit(), 8u);
  auto replies = h.checkpoint("a", 100, model);
  ASSERT_EQ(replies.size(), 1u);
  ASSERT_TRUE(replies[0].has_ack()) << replies[0].DebugString();
  EXPECT_EQ(replies[0].ack().step(), 100);
  const auto& entries = h.core->store().entries("run");
  ASSERT_EQ(entries.size(), 1u);
  // The stored bytes are exactly what was sent.
  std::vector<float> stored(model[0].values.size());
  entries[0]->data[0].read(0, std::as_writable_bytes(std::span(stored)));
  EXPECT_EQ(stored, model[0].values);
  EXPECT_EQ(entries[0]->tokens, 100000);
}

TEST(ServeCore, CreditIsReturnedForEveryChunk) {
  CoreHarness h(options());
  auto model = make_model(100, {{64}});
  h.send("a", test::hello("run", model));
  h.send("a", test::begin(100));
  const auto bytes = test::bytes_of(model[0]);
  std::uint32_t granted = 0;
  for (int i = 0; i < 8; ++i)
    for (auto& o : h.send("a", test::chunk(100, model[0].name, i * 32, bytes.subspan(i * 32, 32)), bytes.subspan(i * 32, 32)))
      if (o.envelope.has_credit()) granted += o.envelope.credit().grant();
  EXPECT_EQ(granted, 8u);  // batches of credit/4 = 2
  // The end's checksum chains the 8 chunk checksums (docs/protocol.md), computed here by hand.
  std::vector<std::byte> chain;
  for (int i = 0; i < 8; ++i) {
    const auto c = wire::checksum(bytes.subspan(i * 32, 32));
    for (int b = 0; b < 8; ++b) chain.push_back(std::byte((c >> (8 * b)) & 0xff));
  }
  auto end = test::end(100, model);
  end.mutable_end()->set_checksum(XXH3_64bits(chain.data(), chain.size()));
  auto out = h.send("a", end);
  ASSERT_TRUE(out.back().envelope.has_ack()) << out.back().envelope.DebugString();
}

TEST(ServeCore, UnknownTensorIsRejectedAndOthersUnaffected) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  h.send("b", test::hello("run", model));
  h.send("a", test::begin(100));
  auto bad = h.send("a", test::chunk(100, "nope", 0, test::bytes_of(model[0])), test::bytes_of(model[0]));
  ASSERT_FALSE(bad.empty());
  bool found = false;
  for (auto& o : bad)
    if (o.envelope.has_error()) {
      EXPECT_EQ(o.envelope.error().code(), v1::UNKNOWN_TENSOR);
      EXPECT_EQ(o.envelope.error().step(), 100);
      EXPECT_EQ(o.peer, "a");
      found = true;
    }
  EXPECT_TRUE(found);
  // The rest of a's checkpoint is dropped quietly; b's goes through.
  auto late = h.send("a", test::end(100, model));
  for (auto& o : late) EXPECT_FALSE(o.envelope.has_ack());
  auto replies = h.checkpoint("b", 100, model);
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_TRUE(replies[0].has_ack());
}

TEST(ServeCore, ManifestMismatchOnSecondHello) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  auto other = make_model(100, {{4, 4}, {5}});  // shape differs
  auto out = h.send("b", test::hello("run", other));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].envelope.has_error());
  EXPECT_EQ(out[0].envelope.error().code(), v1::MANIFEST_MISMATCH);
  auto dtype = test::hello("run", model);
  dtype.mutable_hello()->mutable_manifest(0)->set_dtype("bf16");
  out = h.send("c", dtype);
  EXPECT_EQ(out[0].envelope.error().code(), v1::MANIFEST_MISMATCH);
  // A different run may have its own manifest.
  out = h.send("d", test::hello("other-run", other));
  EXPECT_TRUE(out[0].envelope.has_welcome());
}

TEST(ServeCore, ChunkPastTheManifestSizeIsAMismatch) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  h.send("a", test::begin(100));
  std::vector<std::byte> big(test::bytes_of(model[0]).size() + 4);
  auto out = h.send("a", test::chunk(100, model[0].name, 0, big), big);
  std::vector<v1::Envelope> e;
  for (auto& o : out) e.push_back(o.envelope);
  EXPECT_EQ(error_of(e), v1::MANIFEST_MISMATCH);
}

TEST(ServeCore, ChecksumMismatchPerChunkAndPerCheckpoint) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  h.send("a", test::begin(100));
  auto env = test::chunk(100, model[0].name, 0, test::bytes_of(model[0]));
  env.mutable_chunk()->set_checksum(env.chunk().checksum() ^ 1);
  std::vector<v1::Envelope> e;
  for (auto& o : h.send("a", env, test::bytes_of(model[0]))) e.push_back(o.envelope);
  EXPECT_EQ(error_of(e), v1::CHECKSUM_MISMATCH);

  e.clear();
  h.send("a", test::begin(200));
  for (const auto& t : model) h.send("a", test::chunk(200, t.name, 0, test::bytes_of(t)), test::bytes_of(t));
  auto end = test::end(200, model);
  end.mutable_end()->set_checksum(end.end().checksum() + 1);
  for (auto& o : h.send("a", end)) e.push_back(o.envelope);
  EXPECT_EQ(error_of(e), v1::CHECKSUM_MISMATCH);
  EXPECT_TRUE(h.core->store().entries("run").empty());
}

TEST(ServeCore, DuplicateStepIsAcknowledgedWhenIdenticalAndRejectedWhenNot) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  ASSERT_TRUE(h.checkpoint("a", 100, model)[0].has_ack());
  ASSERT_TRUE(h.checkpoint("a", 200, make_model(200, kShapes))[0].has_ack());
  // A resumed run sends step 100 again, from a new session, with the same bytes: delivered.
  h.send("b", test::hello("run", model));
  auto same = h.checkpoint("b", 100, model);
  ASSERT_EQ(same.size(), 1u);
  EXPECT_TRUE(same[0].has_ack()) << same[0].DebugString();
  EXPECT_EQ(same[0].ack().step(), 100);
  // Different bytes for a held step are a conflict, named.
  auto other = make_model(100, kShapes);
  other[1].values.back() += 1.0f;
  auto again = h.checkpoint("a", 100, other);
  EXPECT_EQ(error_of(again), v1::DUPLICATE_STEP);
  EXPECT_NE(again.back().error().message().find("different contents (tensor '" + other[1].name + "' differs at byte "),
            std::string::npos) << again.back().error().message();
  EXPECT_EQ(h.core->store().entries("run").size(), 2u);
  EXPECT_EQ(h.core->status(h.now).checkpoints_received(), 2u);
  auto older = h.checkpoint("a", 50, model);
  EXPECT_EQ(error_of(older), v1::OUT_OF_ORDER);
}

TEST(ServeCore, TrafficWithoutHelloGetsNoSession) {
  CoreHarness h(options());
  auto out = h.send("ghost", test::begin(100));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].envelope.error().code(), v1::NO_SESSION);
  EXPECT_EQ(out[0].envelope.error().step(), 100);
}

TEST(ServeCore, WrongProtocolVersionInHello) {
  CoreHarness h(options());
  auto out = h.send("a", test::hello("run", make_model(1, kShapes), 7));
  EXPECT_EQ(out[0].envelope.error().code(), v1::VERSION_MISMATCH);
}

TEST(ServeCore, MalformedFramesAreAnsweredAndPoisonAPartialCheckpoint) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  h.send("a", test::begin(100));
  auto out = h.core->fault("a", wire::ProtocolError(v1::MALFORMED, "garbage"), h.now);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].envelope.error().code(), v1::MALFORMED);
  EXPECT_EQ(out[0].envelope.error().step(), 100);
  // Resending the whole checkpoint works.
  EXPECT_TRUE(h.checkpoint("a", 100, model)[0].has_ack());
}

TEST(ServeCore, SilentSenderIsDiscardedAfterTimeoutOthersUnaffected) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("dead", test::hello("run", model));
  h.send("live", test::hello("run2", model));
  h.send("dead", test::begin(100));
  h.send("dead", test::chunk(100, model[0].name, 0, test::bytes_of(model[0])), test::bytes_of(model[0]));
  h.now += std::chrono::milliseconds(300);
  EXPECT_TRUE(h.core->expire(h.now).empty());
  EXPECT_TRUE(h.checkpoint("live", 100, model)[0].has_ack());
  h.now += std::chrono::milliseconds(400);  // dead: 700 ms silent > 500 ms; live: 400 ms
  auto out = h.core->expire(h.now);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].peer, "dead");
  EXPECT_EQ(out[0].envelope.error().code(), v1::TIMEOUT);
  EXPECT_TRUE(h.core->store().entries("run").empty());
  EXPECT_EQ(h.core->store().entries("run2").size(), 1u);
  // The same step from another sender of that run is accepted afterwards.
  h.send("again", test::hello("run", model));
  EXPECT_TRUE(h.checkpoint("again", 100, model)[0].has_ack());
}

TEST(ServeCore, EmissionsFollowEveryAndCoverage) {
  // linear over 300 steps, checkpoints every 100, outputs every 200 steps. Running sums off: this
  // checks the full-merge plan (ServeCore.RunningSumsUpdateEveryCheckpoint covers them).
  auto o = options("linear:300,1-sqrt:200", 200);
  o.running_sums = false;
  CoreHarness h(o);
  auto model = make_model(0, kShapes);
  h.send("a", test::hello("run", model));
  for (std::int64_t step = 0; step <= 800; step += 100) ASSERT_TRUE(h.checkpoint("a", step, make_model(step, kShapes))[0].has_ack());
  // Due at 0, 200, 400, 600, 800. At 0 nothing is covered (one checkpoint); at 200 both are
  // (window_covered): linear:300 holds 0, 100 and 200, and a checkpoint before 0 would lie
  // outside its window anyway.
  ASSERT_EQ(h.jobs.size(), 4u);
  EXPECT_EQ(h.jobs[0].step, 200);
  ASSERT_EQ(h.jobs[0].outputs.size(), 2u);
  EXPECT_EQ(h.jobs[0].outputs[0].emulation.label, "linear_w300");
  EXPECT_EQ(h.jobs[0].outputs[0].source_steps, (std::vector<std::int64_t>{0, 100, 200}));
  EXPECT_EQ(h.jobs[0].outputs[1].emulation.label, "1-sqrt_w200");
  const auto& last = h.jobs.back();
  EXPECT_EQ(last.step, 800);
  ASSERT_EQ(last.outputs.size(), 2u);
  // Reference: schedules/ over the same positions.
  for (const auto& out : last.outputs) {
    std::vector<std::int64_t> positions;
    for (const auto& e : last.inputs) positions.push_back(e->step);
    auto sel = select_window(out.emulation.spec, positions, out.emulation.window);
    std::vector<std::int64_t> steps;
    for (auto i : sel.indices) steps.push_back(positions[i]);
    EXPECT_EQ(out.source_steps, steps);
    ASSERT_EQ(out.source_weights.size(), sel.weights.size());
    for (std::size_t j = 0; j < sel.weights.size(); ++j) EXPECT_DOUBLE_EQ(out.source_weights[j], sel.weights[j]);
  }
  // linear:300 at 800 uses (500, 800] = 600, 700, 800, equal weights.
  EXPECT_EQ(last.outputs[0].source_steps, (std::vector<std::int64_t>{600, 700, 800}));
  for (double w : last.outputs[0].source_weights) EXPECT_NEAR(w, 1.0 / 3, 1e-12);
  // The window keeps the anchor at <= 800-300 and nothing older.
  const auto& entries = h.core->store().entries("run");
  EXPECT_EQ(entries.front()->step, 500);
  EXPECT_EQ(entries.size(), 4u);
}

TEST(ServeCore, RunningSumsUpdateEveryCheckpoint) {
  CoreHarness h(options("linear:300,1-sqrt:200", 200));
  auto model = make_model(0, kShapes);
  h.send("a", test::hello("run", model));
  for (std::int64_t step = 0; step <= 800; step += 100) ASSERT_TRUE(h.checkpoint("a", step, make_model(step, kShapes))[0].has_ack());
  // linear:300 is uniform over evenly spaced checkpoints: a running sum updated at every
  // checkpoint once covered (200..800: at 200 it holds 0, 100, 200), emitted when due (200, 400,
  // 600, 800); 1-sqrt is merged in full.
  std::vector<std::int64_t> updates, emits, full;
  for (const auto& job : h.jobs) {
    for (const auto& s : job.sums) {
      EXPECT_EQ(s.output.emulation.label, "linear_w300");
      EXPECT_EQ(s.model, (SumModel{1.0, false}));
      ASSERT_EQ(s.members.size(), s.weights.size());
      EXPECT_EQ(s.members.back()->step, job.step);
      updates.push_back(job.step);
      if (s.emit) emits.push_back(job.step);
      // The context holds what left the window at this step, for the sum to subtract.
      for (const auto& m : s.members)
        EXPECT_TRUE(std::any_of(job.context.begin(), job.context.end(), [&](const Entry& e) { return e == m; }));
    }
    for (const auto& o : job.outputs) {
      EXPECT_EQ(o.emulation.label, "1-sqrt_w200");
      full.push_back(job.step);
      // Inputs trimmed to the full merge's own sources.
      EXPECT_EQ(job.inputs.size(), o.source_steps.size());
    }
  }
  EXPECT_EQ(updates, (std::vector<std::int64_t>{200, 300, 400, 500, 600, 700, 800}));
  EXPECT_EQ(emits, (std::vector<std::int64_t>{200, 400, 600, 800}));
  EXPECT_EQ(full, (std::vector<std::int64_t>{200, 400, 600, 800}));
}

TEST(ServeCore, SumModelRecognisesUniformAndEmaOnly) {
  EXPECT_EQ(sum_model(parse_merge_spec("linear"), std::vector<double>{0.25, 0.25, 0.25, 0.25}), (SumModel{1.0, false}));
  const auto ema = parse_merge_spec("ema:alpha=0.2");
  const auto w = merge_weights(ema, 5);  // schedules/: c_0 = 0.8^4, c_j = 0.2 * 0.8^(4-j)
  const auto m = sum_model(ema, w);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->anchor_apart);
  EXPECT_DOUBLE_EQ(m->ratio, 0.8);
  EXPECT_FALSE(sum_model(parse_merge_spec("1-sqrt"), merge_weights(parse_merge_spec("1-sqrt"), 5)).has_value());
  EXPECT_FALSE(sum_model(parse_merge_spec("linear"), std::vector<double>{1.0 / 3, 1.0 / 3, 1.0 / 6, 1.0 / 6}).has_value());
  EXPECT_FALSE(sum_model(ema, std::vector<double>{0.5, 0.25, 0.25}).has_value());
}

TEST(ServeCore, StatusReportsWindowAndCounters) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  h.checkpoint("a", 100, model);
  auto out = h.send("s", [] {
    auto e = wire::envelope();
    e.mutable_status_request();
    return e;
  }());
  ASSERT_TRUE(out[0].envelope.has_status_reply());
  const auto& s = out[0].envelope.status_reply();
  EXPECT_EQ(s.checkpoints_received(), 1u);
  EXPECT_EQ(s.bytes_received(), (12u + 5u) * 4u);
  ASSERT_EQ(s.window_size(), 1);
  EXPECT_EQ(s.window(0).step(), 100);
  EXPECT_TRUE(s.window(0).in_memory());
  EXPECT_EQ(s.peers(), 1u);
}

TEST(ServeCore, UnknownMessageFromClient) {
  CoreHarness h(options());
  auto env = wire::envelope();
  env.mutable_ack()->set_step(1);
  auto out = h.send("a", env);
  EXPECT_EQ(out[0].envelope.error().code(), v1::UNKNOWN_MESSAGE);
}

}  // namespace
}  // namespace wsm::merger
