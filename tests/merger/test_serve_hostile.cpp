// Issue 12: hostile peers against MergerCore (no sockets). Every message ends in a reply, never in
// an exit; a resend from a new session is not mistaken for a delivered checkpoint; run ids are safe
// folder names; sizes never wrap; absurd steps and request floods are refused.
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "core_harness.h"
#include "merger/daemon/run_id.h"
#include "serve_test_util.h"

namespace wsm::merger {
namespace {

using test::make_model;

const std::vector<std::vector<std::int64_t>> kShapes{{4, 3}, {5}};

v1::Envelope hello_with_shape(const std::string& run, const std::string& dtype, std::vector<std::int64_t> shape) {
  auto env = wire::envelope();
  auto* h = env.mutable_hello();
  h->set_protocol_version(wire::kProtocolVersion);
  h->set_run_id(run);
  auto* s = h->add_manifest();
  s->set_name("huge");
  s->set_dtype(dtype);
  for (auto d : shape) s->add_shape(d);
  return env;
}

using test::merge_request;

bool status_answers(CoreHarness& h) {
  auto st = wire::envelope();
  st.mutable_status_request();
  auto out = h.send("status", st);
  return out.size() == 1 && out[0].envelope.has_status_reply();
}

TEST(TensorInfoSizes, ByteSizesThatWrapAreRefused) {
  constexpr std::int64_t k2_62 = std::int64_t{1} << 62, k2_61 = std::int64_t{1} << 61;
  EXPECT_THROW((TensorInfo{"a", DType::f64, {k2_62}}.nbytes()), Error);      // 2^65 bytes, wrapped to 0
  EXPECT_THROW((TensorInfo{"b", DType::f64, {k2_61 + 1}}.nbytes()), Error);  // wrapped to 8
  EXPECT_THROW((TensorInfo{"c", DType::f32, {std::int64_t{1} << 31, std::int64_t{1} << 31}}.nbytes()), Error);
  EXPECT_THROW((TensorInfo{"d", DType::f32, {k2_62, k2_62}}.numel()), Error);
  // The largest sizes that fit are exact.
  EXPECT_EQ((TensorInfo{"e", DType::f64, {k2_61 - 1}}.nbytes()), (static_cast<std::uint64_t>(k2_61) - 1) * 8);
  EXPECT_EQ((TensorInfo{"f", DType::u8, {k2_62, 3}}.nbytes()), static_cast<std::uint64_t>(k2_62) * 3);
}

TEST(ServeHostile, HelloWithSizesThatOverflowIsRefusedAndBeginIsAnswered) {
  CoreHarness h(options());
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> cases{
      {"f64", {std::int64_t{1} << 62}},                                 // bytes overflow (was acked as 0 bytes)
      {"f64", {(std::int64_t{1} << 61) + 1}},                           // bytes overflow (was 8 bytes)
      {"f32", {std::int64_t{1} << 40, std::int64_t{1} << 40, 1 << 20}},  // element count overflows
  };
  for (const auto& [dtype, shape] : cases) {
    auto out = h.send("p", hello_with_shape("run", dtype, shape));
    ASSERT_EQ(out.size(), 1u);
    ASSERT_TRUE(out[0].envelope.has_error()) << out[0].envelope.DebugString();
    EXPECT_EQ(out[0].envelope.error().code(), v1::BAD_REQUEST);
    EXPECT_NE(out[0].envelope.error().message().find("overflow"), std::string::npos) << out[0].envelope.error().message();
    auto begin = h.send("p", test::begin(100));
    ASSERT_EQ(begin.size(), 1u);
    EXPECT_EQ(begin[0].envelope.error().code(), v1::NO_SESSION);
  }
  // Two tensors that fit alone but not together.
  auto env = hello_with_shape("run", "u8", {std::int64_t{1} << 62, 3});
  auto* second = env.mutable_hello()->add_manifest();
  *second = env.hello().manifest(0);
  second->set_name("huge2");
  EXPECT_EQ(error_of(bodies(h.send("p", env), "p")), v1::BAD_REQUEST);
  EXPECT_TRUE(status_answers(h));
}

// Three checkpoints (100, 200, 300) of run "run" from peer "a".
void add_three_checkpoints(CoreHarness& h) {
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  for (std::int64_t step = 100; step <= 300; step += 100) EXPECT_TRUE(h.checkpoint("a", step, model).at(0).has_ack());
}

TEST(ServeHostile, MergeRequestWithATableThatDoesNotFitTheWindowGetsAnError) {
  CoreHarness h(options());
  add_three_checkpoints(h);
  for (const std::string table : {"weights=1,2", "decay=1,0.5,0.25,0.1"}) {
    auto out = bodies(h.send("m", merge_request(7, "run", table, "300")), "m");
    ASSERT_EQ(out.size(), 1u);
    ASSERT_TRUE(out[0].has_error()) << out[0].DebugString();
    EXPECT_EQ(out[0].error().code(), v1::BAD_REQUEST);
    EXPECT_EQ(out[0].error().request_id(), 7u);
    EXPECT_NE(out[0].error().message().find("table"), std::string::npos) << out[0].error().message();
  }
  // A table that fits is planned: 3 checkpoints in (0, 300].
  const auto jobs_before = h.jobs.size();
  EXPECT_TRUE(bodies(h.send("m", merge_request(8, "run", "weights=1,2,3", "300")), "m").empty());
  ASSERT_EQ(h.jobs.size(), jobs_before + 1);
  EXPECT_EQ(h.jobs.back().outputs.at(0).source_steps, (std::vector<std::int64_t>{100, 200, 300}));
  EXPECT_TRUE(status_answers(h));
}

TEST(ServeHostile, MergeRequestOverTokensThatDoNotIncreaseGetsAnError) {
  CoreHarness h(options("linear:300", 100));  // a steps emulation: tokens are not checked at ingest
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  for (std::int64_t step = 100; step <= 300; step += 100) {
    auto begin = test::begin(step);
    begin.mutable_begin()->set_tokens(5000);  // the same token count every time
    h.send("a", begin);
    for (const auto& t : model) h.send("a", test::chunk(step, t.name, 0, test::bytes_of(t)), test::bytes_of(t));
    ASSERT_TRUE(bodies(h.send("a", test::end(step, model)), "a").at(0).has_ack());
  }
  auto out = bodies(h.send("m", merge_request(3, "run", "linear", "1Kt")), "m");
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].has_error());
  EXPECT_EQ(out[0].error().code(), v1::BAD_REQUEST);
  EXPECT_NE(out[0].error().message().find("ascending"), std::string::npos) << out[0].error().message();
  EXPECT_TRUE(status_answers(h));
}

TEST(ServeHostile, PeriodicTableWithUnevenSpacingSkipsTheOutputNotTheDaemon) {
  // weights=1,1,1 needs exactly 3 checkpoints in (newest - 300, newest]: true at 300 (100, 200,
  // 300) and 400 (200, 300, 400), false once a checkpoint lands between (450: 200..450 holds 4).
  for (bool sums : {true, false}) {
    auto o = options("weights=1,1,1:300", 100);
    o.running_sums = sums;
    CoreHarness h(o);
    auto model = make_model(100, kShapes);
    h.send("a", test::hello("run", model));
    for (std::int64_t step : {100, 200, 300, 400, 450, 500, 600})
      ASSERT_TRUE(h.checkpoint("a", step, model).at(0).has_ack()) << "step " << step;
    std::vector<std::int64_t> emitted;
    for (const auto& j : h.jobs) {
      emitted.insert(emitted.end(), j.outputs.size(), j.step);
      for (const auto& item : j.sums)
        if (item.emit) emitted.push_back(j.step);
    }
    // Due at 100..400, 500 and 600; covered from 300 on (window_covered). (0, 300] and (100, 400]
    // hold 3 checkpoints each: written. (200, 500] and (300, 600] hold 4 each: skipped, and the
    // daemon goes on.
    EXPECT_EQ(emitted, (std::vector<std::int64_t>{300, 400})) << "running sums " << sums;
    EXPECT_TRUE(status_answers(h));
  }
}

TEST(ServeHostile, ResendFromANewSessionTakesOverTheStalledPartial) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("old", test::hello("run", model));
  h.send("old", test::begin(100));
  h.send("old", test::chunk(100, model[0].name, 0, test::bytes_of(model[0])), test::bytes_of(model[0]));
  // The client gave up on "old" (stall timeout) and resends from a new socket.
  h.send("new", test::hello("run", model));
  std::vector<Outgoing> all;
  auto keep = [&](std::vector<Outgoing> out) { all.insert(all.end(), out.begin(), out.end()); };
  keep(h.send("new", test::begin(100)));
  for (const auto& t : model) keep(h.send("new", test::chunk(100, t.name, 0, test::bytes_of(t)), test::bytes_of(t)));
  keep(h.send("new", test::end(100, model)));
  auto to_new = bodies(all, "new"), to_old = bodies(all, "old");
  ASSERT_EQ(to_new.size(), 1u);
  EXPECT_TRUE(to_new[0].has_ack()) << to_new[0].DebugString();  // was DUPLICATE_STEP, then lost
  ASSERT_EQ(to_old.size(), 1u);
  EXPECT_EQ(to_old[0].error().code(), v1::TAKEN_OVER);
  EXPECT_EQ(to_old[0].error().step(), 100);
  EXPECT_TRUE(h.core->store().contains("run", 100));
  // The old partial cannot expire into anything now, nor its late chunks disturb the window.
  h.send("old", test::chunk(100, model[1].name, 0, test::bytes_of(model[1])), test::bytes_of(model[1]));
  h.now += std::chrono::seconds(5);
  EXPECT_TRUE(h.core->expire(h.now).empty());
  EXPECT_EQ(h.core->store().entries("run").size(), 1u);
  // Sent again whole with the same bytes: acknowledged; with other bytes: DUPLICATE_STEP.
  EXPECT_TRUE(h.checkpoint("new", 100, model).back().has_ack());
  EXPECT_EQ(error_of(h.checkpoint("new", 100, make_model(101, kShapes))), v1::DUPLICATE_STEP);
}

TEST(ServeHostile, RunIdsOutsideTheSafeSetAreRefusedAtHelloAndInRequests) {
  CoreHarness h(options());
  add_three_checkpoints(h);
  auto model = make_model(100, kShapes);
  const std::vector<std::string> bad{"a/b", "", ".", "..", "_", ".hidden", "-rf", "a b", "x.tmp-1-2",
                                     std::string(129, 'r'), std::string(300, 'r'), std::string("a\0b", 3), "run\n"};
  for (const auto& id : bad) {
    auto out = bodies(h.send("p", test::hello(id, model)), "p");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(error_of(out), v1::BAD_REQUEST) << "run id '" << id << "' was accepted";
    EXPECT_NE(out[0].error().message().find("run id"), std::string::npos);
    EXPECT_EQ(error_of(bodies(h.send("m", merge_request(1, id, "linear", "200")), "m")), v1::BAD_REQUEST) << id;
  }
  for (const std::string& id : std::vector<std::string>{"a_b", "a-b.c", "R2", std::string(128, 'r')}) {
    auto out = bodies(h.send("q", test::hello(id, model)), "q");
    ASSERT_EQ(out.size(), 1u);
    EXPECT_TRUE(out[0].has_welcome()) << id << ": " << out[0].DebugString();
  }
  // Store and out use the id unchanged: one id, one folder.
  EXPECT_EQ(run_folder("/s", "a_b"), std::filesystem::path("/s/a_b"));
  EXPECT_THROW(run_folder("/s", "a/b"), Error);
}

TEST(ServeHostile, NegativeAndAbsurdStepsAreRefusedAndDoNotBlockTheRun) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  EXPECT_EQ(error_of(h.checkpoint("a", -5, model)), v1::BAD_REQUEST);
  EXPECT_EQ(error_of(h.checkpoint("a", std::int64_t{1} << 62, model)), v1::BAD_REQUEST);
  EXPECT_EQ(error_of(h.checkpoint("a", kMaxStepJump + 1, model)), v1::BAD_REQUEST);
  EXPECT_TRUE(h.checkpoint("a", 100, model).at(0).has_ack());
  EXPECT_TRUE(h.checkpoint("a", 100 + kMaxStepJump, model).at(0).has_ack());  // the bound itself is allowed
  EXPECT_TRUE(h.core->store().contains("run", 100));
  EXPECT_TRUE(h.core->store().contains("run", 100 + kMaxStepJump));
}

TEST(ServeHostile, QueuedMergeRequestsPerPeerAreCapped) {
  CoreHarness h(options());
  add_three_checkpoints(h);
  const auto jobs_before = h.jobs.size();
  for (int i = 1; i <= kMaxQueuedRequestsPerPeer; ++i)
    EXPECT_TRUE(bodies(h.send("m", merge_request(i, "run", "linear", "200")), "m").empty());
  auto refused = bodies(h.send("m", merge_request(99, "run", "linear", "200")), "m");
  EXPECT_EQ(error_of(refused), v1::BAD_REQUEST);
  EXPECT_TRUE(bodies(h.send("other", merge_request(1, "run", "linear", "200")), "other").empty());
  ASSERT_EQ(h.jobs.size(), jobs_before + kMaxQueuedRequestsPerPeer + 1);
  // One answered: room for one more.
  h.core->job_done(h.jobs[jobs_before], {}, "");
  EXPECT_TRUE(bodies(h.send("m", merge_request(100, "run", "linear", "200")), "m").empty());
  EXPECT_EQ(error_of(bodies(h.send("m", merge_request(101, "run", "linear", "200")), "m")), v1::BAD_REQUEST);
  // New peer ids do not get around it: all peers together are capped too ("m" holds 4, "other" 1).
  const auto before_flood = h.jobs.size();
  for (int p = 0; p < 2 * kMaxQueuedRequests; ++p)
    h.send("flood-" + std::to_string(p), merge_request(1, "run", "linear", "200"));
  EXPECT_EQ(h.jobs.size() - before_flood, static_cast<std::size_t>(kMaxQueuedRequests - kMaxQueuedRequestsPerPeer - 1));
}

std::vector<Outgoing> send_as(CoreHarness& h, const std::string& peer, const std::string& key, v1::Envelope env) {
  wire::Message m;
  m.peer = peer;
  m.user_id = key;  // what the ZAP handler sets: the client's CURVE public key
  m.envelope = std::move(env);
  return h.core->handle(std::move(m), h.now);
}

TEST(ServeHostile, WithCurveARunBelongsToTheKeyThatStartedIt) {
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  ASSERT_TRUE(send_as(h, "a", "KEY-A", test::hello("run", model)).at(0).envelope.has_welcome());
  EXPECT_TRUE(h.checkpoint("a", 100, model).at(0).has_ack());
  // Another allowed key can neither join the run (to poison it or take a partial over) nor merge it.
  auto squat = bodies(send_as(h, "b", "KEY-B", test::hello("run", model)), "b");
  EXPECT_EQ(error_of(squat), v1::BAD_REQUEST);
  EXPECT_NE(squat.at(0).error().message().find("another client key"), std::string::npos);
  EXPECT_EQ(error_of(bodies(h.send("b", test::begin(200)), "b")), v1::NO_SESSION);
  EXPECT_EQ(error_of(bodies(send_as(h, "b", "KEY-B", merge_request(1, "run", "linear", "100")), "b")), v1::BAD_REQUEST);
  // The owner, from a new socket, still can; and KEY-B has runs of its own.
  EXPECT_TRUE(send_as(h, "a2", "KEY-A", test::hello("run", model)).at(0).envelope.has_welcome());
  EXPECT_TRUE(h.checkpoint("a2", 200, model).at(0).has_ack());
  EXPECT_TRUE(send_as(h, "b", "KEY-B", test::hello("run-b", model)).at(0).envelope.has_welcome());
}

TEST(ServeHostile, WithCurveARunsOwnerIsForgottenWithTheRun) {
  // Before: one owner entry per run id ever named, for the daemon's life. Now the owner goes with
  // the run's last session and checkpoint, and stays while the window holds a checkpoint of it.
  CoreHarness h(options());
  auto model = make_model(100, kShapes);
  for (int i = 0; i < 1000; ++i)  // one socket naming run after run: each replaces the last
    ASSERT_TRUE(send_as(h, "a", "KEY-A", test::hello("run-" + std::to_string(i), model)).at(0).envelope.has_welcome());
  ASSERT_TRUE(send_as(h, "a", "KEY-A", test::hello("kept", model)).at(0).envelope.has_welcome());
  EXPECT_TRUE(h.checkpoint("a", 100, model).at(0).has_ack());
  ASSERT_TRUE(send_as(h, "a", "KEY-A", test::hello("last", model)).at(0).envelope.has_welcome());
  // run-0 .. run-999 hold nothing: another key may start them; "kept" holds a checkpoint: it may not.
  EXPECT_TRUE(send_as(h, "b", "KEY-B", test::hello("run-7", model)).at(0).envelope.has_welcome());
  auto squat = bodies(send_as(h, "c", "KEY-B", test::hello("kept", model)), "c");
  EXPECT_EQ(error_of(squat), v1::BAD_REQUEST);
}

TEST(ServeHostile, PartialCheckpointsCountAgainstTheMemoryBudget) {
  // Checkpoints large beside their manifests (which count too, a few hundred bytes per run).
  auto model = make_model(100, {{64, 64}, {32}});
  const std::uint64_t one = (64 * 64 + 32) * sizeof(float);
  for (bool store : {false, true}) {
    auto o = options();
    o.store.memory_budget = 2 * one + one / 2;
    if (store) o.store.store_dir = test::temp_dir("budget-store");
    CoreHarness h(o);
    for (const std::string p : {"a", "b", "c"}) ASSERT_TRUE(h.send(p, test::hello("run-" + p, model)).at(0).envelope.has_welcome());
    h.send("a", test::begin(100));
    h.send("b", test::begin(100));
    // Two partials hold 2 checkpoints: a third does not fit.
    auto third = bodies(h.send("c", test::begin(100)), "c");
    EXPECT_EQ(error_of(third), v1::OVER_BUDGET) << "store " << store;
    EXPECT_NE(third.at(0).error().message().find("--memory-budget"), std::string::npos);
    for (const std::string p : {"a", "b"}) {
      for (const auto& t : model) h.send(p, test::chunk(100, t.name, 0, test::bytes_of(t)), test::bytes_of(t));
      ASSERT_TRUE(bodies(h.send(p, test::end(100, model)), p).at(0).has_ack());
    }
    // The window now holds 2 checkpoints: without a store it cannot spill, so they still count;
    // with one they count until written (then they spill to make room).
    if (store) h.core->flush_store();
    auto again = h.checkpoint("c", 100, model);
    if (store) EXPECT_TRUE(again.at(0).has_ack());
    else EXPECT_EQ(error_of(again), v1::OVER_BUDGET);
    if (store) h.core->flush_store();
  }
  // A manifest larger than the budget is refused at Hello.
  auto o = options();
  o.store.memory_budget = one - 1;
  CoreHarness h(o);
  EXPECT_EQ(error_of(bodies(h.send("a", test::hello("run", model)), "a")), v1::OVER_BUDGET);
}

TEST(ServeHostile, ACheckpointTheStoreCouldNotWriteIsWrittenOnceItCan) {
  auto o = options();
  const auto store = test::temp_dir("retry-store");
  o.store.store_dir = store;
  o.store.write_retry = std::chrono::milliseconds(50);
  std::ofstream(store / "run") << "a file where the run's folder goes: every write fails, as on a full disk";
  CoreHarness h(o);
  auto model = make_model(100, kShapes);
  h.send("a", test::hello("run", model));
  ASSERT_TRUE(h.checkpoint("a", 100, model).at(0).has_ack());
  ASSERT_TRUE(test::wait_for([&] { return h.core->store().failing_writes() == 1; }, 3000));
  const auto entry = h.core->store().entries("run").at(0);
  EXPECT_FALSE(entry->lease->persisted);
  EXPECT_TRUE(entry->in_memory());  // kept in RAM meanwhile
  std::filesystem::remove(store / "run");  // space returns
  ASSERT_TRUE(test::wait_for([&] { return entry->lease->persisted.load(); }, 5000)) << "never written";
  EXPECT_EQ(h.core->store().failing_writes(), 0u);
  const auto stored = load_checkpoint(store / "run" / "step_000000000100.h5");
  ASSERT_EQ(stored.tensors.size(), model.size());
  for (std::size_t t = 0; t < model.size(); ++t) {
    std::vector<float> got(model[t].values.size());
    ASSERT_EQ(stored.tensors[t].data.size(), got.size() * sizeof(float));
    std::memcpy(got.data(), stored.tensors[t].data.data(), stored.tensors[t].data.size());
    EXPECT_EQ(got, model[t].values);
  }
}

}  // namespace
}  // namespace wsm::merger
