// Issue 12 item 6: --memory-budget bounds the daemon's memory. Checkpoints being received, the
// running sums and the window's RAM copies that cannot spill all count against it; the window
// spills to make room for what is being received; no frame much larger than the budget is read;
// and both clients wait out an OVER_BUDGET refusal with backoff (bounded by their reconnect time).
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "core_harness.h"
#include "wsm/client/client.h"
#include "serve_test_util.h"
#include "tests/run_command.h"

namespace wsm::merger {
namespace {

using test::make_model;

// Checkpoints large beside their manifests (which count too, a few hundred bytes per run).
const std::vector<std::vector<std::int64_t>> kShapes{{64, 64}, {32}};
constexpr std::uint64_t kOne = (64 * 64 + 32) * sizeof(float);  // one checkpoint of kShapes

TEST(ServeBudget, TheWindowSpillsToMakeRoomForCheckpointsBeingReceived) {
  auto o = options("linear:1000");  // nothing leaves the window in this test
  o.store.store_dir = test::temp_dir("budget-spill-store");
  o.store.memory_budget = 3 * kOne + kOne / 2;
  CoreHarness h(o);
  auto model = make_model(100, kShapes);
  for (const std::string p : {"a", "b", "c", "d", "e"})
    ASSERT_TRUE(h.send(p, test::hello("run-" + p, model)).at(0).envelope.has_welcome());
  for (std::int64_t step : {100, 200, 300}) ASSERT_TRUE(h.checkpoint("a", step, model).at(0).has_ack());
  h.core->flush_store();  // persisted: their RAM copies may go
  EXPECT_EQ(h.core->store().memory_bytes(), 3 * kOne);  // the budget holds all three

  // Each partial takes a checkpoint's room from the window (was: 3 in RAM beside 3 partials).
  std::uint64_t partials = 0;
  for (const std::string p : {"b", "c", "d"}) {
    EXPECT_EQ(error_of(bodies(h.send(p, test::begin(100)), p)), v1::ERROR_UNSPECIFIED) << p;
    partials += kOne;
    EXPECT_LE(h.core->store().memory_bytes() + partials, 3 * kOne + kOne / 2) << p;
  }
  EXPECT_EQ(h.core->store().memory_bytes(), 0u);
  // Three partials fill the budget: a fourth is refused, naming it.
  auto fourth = bodies(h.send("e", test::begin(100)), "e");
  EXPECT_EQ(error_of(fourth), v1::OVER_BUDGET);
  EXPECT_NE(fourth.at(0).error().message().find("--memory-budget"), std::string::npos);
  h.core->flush_store();
}

TEST(ServeBudget, RunningSumsCountAgainstTheBudget) {
  auto o = options("linear:1000");
  o.store.memory_budget = 3 * kOne + kOne / 2;  // no store: the window cannot spill
  std::uint64_t sums = 2 * kOne;  // what the emission worker would report for its f64 state
  CoreHarness h(o, {.running_sum_bytes = [&] { return sums; }});
  auto model = make_model(100, kShapes);
  ASSERT_TRUE(h.send("a", test::hello("run", model)).at(0).envelope.has_welcome());
  EXPECT_TRUE(h.checkpoint("a", 100, model).at(0).has_ack());  // 2 + 1 fit
  auto refused = h.checkpoint("a", 200, model);                // window 1 + sums 2 + 1 do not (was: acked)
  EXPECT_EQ(error_of(refused), v1::OVER_BUDGET);
  EXPECT_NE(refused.at(0).error().message().find("running sums"), std::string::npos);
  sums = kOne;
  EXPECT_TRUE(h.checkpoint("a", 200, model).at(0).has_ack());
}

using test::status_of;

TEST(ServeBudget, NoFrameMuchLargerThanTheBudgetIsRead) {
  auto opts = test::server_options(test::temp_dir("budget-frame-out"), "linear:200", 100);
  opts.core.store.memory_budget = 4 << 20;  // chunks stay at their default, 64 MiB
  test::ServerThread server(opts);
  test::RawPeer big(server.endpoint());
  big.send_frames({std::string(6 << 20, '\xab')});  // larger than any chunk of a checkpoint that fits
  EXPECT_FALSE(big.next(1000).has_value());         // dropped by ZeroMQ unread (was: read and answered MALFORMED)
  test::RawPeer small(server.endpoint());
  small.send_frames({std::string(3 << 20, '\xab')});  // under the budget: read, and answered
  auto r = small.next();
  ASSERT_TRUE(r && r->has_error());
  EXPECT_EQ(r->error().code(), v1::MALFORMED);
  // A checkpoint of 3 MiB in one chunk still arrives.
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.chunk_bytes = 8 << 20;
  MergerClient client(co);
  auto model = make_model(100, {{768, 1024}});
  client.send_checkpoint(100, 100, 1e-3, test::views(model));
  EXPECT_NO_THROW(client.flush());
  EXPECT_EQ(status_of(server.endpoint()).checkpoints_received(), 1u);
}

// A daemon whose budget holds one 1 MiB checkpoint and a half, and a peer holding a partial one.
struct BudgetTaken {
  std::vector<test::OwnedTensor> model = make_model(100, {{512, 512}});
  test::ServerThread server;
  test::RawPeer hog;
  BudgetTaken()
      : server([] {
          auto o = test::server_options(test::temp_dir("budget-client-out"), "linear:200", 100);
          o.core.store.store_dir = test::temp_dir("budget-client-store");
          o.core.store.memory_budget = (3 << 20) / 2;
          return o;
        }()),
        hog(server.endpoint()) {
    hog.send(test::hello("hog", model));
    if (auto r = hog.next(); !r || !r->has_welcome()) throw Error("hog: no welcome");
    hog.send(test::begin(100));  // and never more: a partial checkpoint of 1 MiB
    // A round trip on the hog's own connection: the daemon handles it after the Begin, so the partial
    // is held before any other peer's checkpoint arrives (messages of two sockets have no order).
    auto st = wire::envelope();
    st.mutable_status_request();
    hog.send(st);
    if (auto r = hog.next(); !r || !r->has_status_reply()) throw Error("hog: no status reply");
  }
  // The hog leaves once `waiting` has been refused at least once.
  bool release_after_a_refusal() {
    if (!test::wait_for([&] { return status_of(server.endpoint()).checkpoints_rejected() >= 1; })) return false;
    auto bye = wire::envelope();
    bye.mutable_bye();
    hog.send(bye);
    return true;
  }
};

TEST(ServeBudget, CppClientWaitsOutOverBudgetThenDelivers) {
  BudgetTaken taken;
  ClientOptions co;
  co.endpoint = taken.server.endpoint();
  co.run_id = "good";
  MergerClient client(co);
  client.send_checkpoint(100, 100, 1e-3, test::views(taken.model));
  ASSERT_TRUE(taken.release_after_a_refusal());
  EXPECT_NO_THROW(client.flush());  // was: "merger rejected step 100: ... exceed --memory-budget"
  EXPECT_EQ(client.stats().checkpoints_acked, 1u);
  EXPECT_GE(client.stats().budget_waits, 1u);
  EXPECT_EQ(client.stats().reconnects, 0u);  // waited on its socket, not reconnected
  EXPECT_EQ(status_of(taken.server.endpoint()).checkpoints_received(), 1u);
}

TEST(ServeBudget, CppClientGivesUpOverBudgetAfterItsReconnectTimeout) {
  BudgetTaken taken;
  ClientOptions co;
  co.endpoint = taken.server.endpoint();
  co.run_id = "good";
  co.reconnect_timeout_ms = 1500;
  MergerClient client(co);
  const auto start = std::chrono::steady_clock::now();
  client.send_checkpoint(100, 100, 1e-3, test::views(taken.model));
  try {
    client.flush();
    ADD_FAILURE() << "delivered past a budget that never frees";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("memory budget"), std::string::npos) << e.what();
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(waited, 1.5);
  EXPECT_LT(waited, 6.0);
  EXPECT_GE(client.stats().budget_waits, 2u);  // backoff: several tries, not one
  EXPECT_EQ(client.stats().checkpoints_failed, 1u);
}

TEST(ServeBudget, PythonClientWaitsOutOverBudget) {
  if (std::system((std::string(WSM_PYTHON) + " -c 'import zmq, numpy, google.protobuf' 2>/dev/null").c_str()) != 0) {
    GTEST_FAIL() << WSM_PYTHON << " lacks pyzmq/numpy/protobuf (tools/install-deps.sh installs them)";
  }
  for (const std::string expect : {"delivered", "fails"}) {
    BudgetTaken taken;
    const std::string cmd = std::string("PYTHONPATH=") + WSM_SOURCE_DIR + "/protocol/python WSM_PB2_DIR=" +
                            WSM_BINARY_DIR + "/gen/python " + WSM_PYTHON + " " + WSM_SOURCE_DIR +
                            "/tests/merger/python_client_budget.py --endpoint " + taken.server.endpoint() +
                            " --elements " + std::to_string(512 * 512) + " --reconnect-timeout-ms " +
                            (expect == "fails" ? "1500" : "30000") + " --expect " + expect;
    test::CommandResult result;
    std::thread script([&] { result = test::run_command(cmd); });
    if (expect == "delivered") {
      EXPECT_TRUE(taken.release_after_a_refusal());
    }
    script.join();
    EXPECT_EQ(result.rc, 0) << cmd << "\n" << result.out << result.err;
  }
}

}  // namespace
}  // namespace wsm::merger
