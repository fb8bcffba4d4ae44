// End to end over 127.0.0.1: the C++ client streams a sequence of checkpoints to a Server; every
// merged output equals a double-precision reference computed from the same tensors with weights
// from schedules/ (select_window over the steps sent), and index.json/provenance say so.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "serve_test_util.h"

namespace wsm {
namespace {

const std::vector<std::vector<std::int64_t>> kShapes{{64, 33}, {100}};

struct Sent {
  std::vector<std::int64_t> steps;
};

// Checks one output file against sum_j c_j * theta_j in double, theta from the formula.
void check_output(const nlohmann::json& rec, const std::vector<std::int64_t>& all_steps, int int_tensor_index) {
  const auto spec = parse_merge_spec(rec["spec"].get<std::string>());
  const std::int64_t step = rec["step"];
  const auto sel = test::expected_window(rec, all_steps);
  const auto& src = sel.sources;
  EXPECT_EQ(rec["sources"].get<std::vector<std::int64_t>>(), src) << rec.dump();

  const auto ckpt = load_checkpoint(rec["path"].get<std::string>());
  EXPECT_EQ(ckpt.meta.step, step);
  const auto provenance = nlohmann::json::parse(ckpt.meta.extra.at("wsm.provenance"));
  EXPECT_EQ(provenance.at("tool"), "wsm serve");
  EXPECT_EQ(provenance.at("spec"), spec.to_string());
  std::vector<std::int64_t> steps;
  std::vector<double> weights;
  for (const auto& s : provenance.at("sources")) {
    steps.push_back(s.at("step").get<std::int64_t>());
    weights.push_back(s.at("weight").get<double>());
  }
  EXPECT_EQ(steps, src);
  ASSERT_EQ(weights.size(), sel.weights.size());
  for (std::size_t j = 0; j < weights.size(); ++j) EXPECT_NEAR(weights[j], sel.weights[j], 1e-15);

  ASSERT_EQ(ckpt.tensors.size(), kShapes.size() + 1);
  for (std::size_t t = 0; t < kShapes.size(); ++t) {
    const auto& out = ckpt.tensors[t];
    ASSERT_EQ(out.info.dtype, DType::f32);
    const std::size_t n = out.data.size() / 4;
    double max_err = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double ref = 0;
      for (std::size_t j = 0; j < src.size(); ++j) ref += sel.weights[j] * test::tensor_value(static_cast<int>(t), src[j], i);
      float got;
      std::memcpy(&got, out.data.data() + i * 4, 4);
      max_err = std::max(max_err, std::abs(got - ref));
    }
    EXPECT_LT(max_err, 2e-6) << out.info.name << " in " << rec["path"];
  }
  // The integer tensor is the newest checkpoint's, never averaged.
  const auto& counter = ckpt.tensors[static_cast<std::size_t>(int_tensor_index)];
  ASSERT_EQ(counter.info.dtype, DType::i64);
  std::int64_t v;
  std::memcpy(&v, counter.data.data(), 8);
  EXPECT_EQ(v, step);
}

TEST(ServeEndToEnd, CppClientSequenceMatchesDoubleReference) {
  const auto out = test::temp_dir("e2e-out");
  auto opts = test::server_options(out, "linear:300,1-sqrt:400,cosine:400", 200);
  test::ServerThread server(opts);

  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "gpt";
  co.chunk_bytes = 1000;  // many chunks, not aligned to elements
  std::vector<std::int64_t> steps;
  {
    MergerClient client(co);
    for (std::int64_t step = 0; step <= 1000; step += 100) {
      auto model = test::make_model(step, kShapes);
      auto v = test::views(model);
      std::int64_t counter = step;
      v.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&counter), 8}});
      client.send_checkpoint(step, step * 1000, 1e-3, v);  // the model is freed right after: snapshot
      steps.push_back(step);
      // Paced, so that no output is coalesced away (test_serve_core covers that policy).
      client.flush();
      server.server().wait_outputs_idle();
    }
    client.flush();
    EXPECT_EQ(client.stats().checkpoints_acked, steps.size());
  }
  server.server().wait_outputs_idle();

  std::ifstream in(out / "index.json");
  ASSERT_TRUE(in) << "no index.json";
  const auto index = nlohmann::json::parse(in);
  const auto& outputs = index["outputs"];
  // Due at 0, 200, ..., 1000; linear:300 covered from 200 on (0, 100, 200 fill its window:
  // outputs 200..1000, 5), the 400-step shapes from 400 on (400..1000: 4 each).
  ASSERT_EQ(outputs.size(), 13u) << index.dump(2);
  for (const auto& rec : outputs) check_output(rec, steps, 2);
}

TEST(ServeEndToEnd, OwnedBuffersAreStreamedInPlaceAndReleasedAfterTheAck) {
  const auto out = test::temp_dir("e2e-owned");
  test::ServerThread server(test::server_options(out, "linear:200,1-sqrt:200", 100));
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "owned";
  co.chunk_bytes = 3000;
  MergerClient client(co);
  struct Staged {  // what a trainer stages in host memory of its own
    std::vector<test::OwnedTensor> model;
    std::int64_t counter = 0;
  };
  std::vector<std::int64_t> steps;
  std::vector<std::weak_ptr<Staged>> released;
  for (std::int64_t step = 100; step <= 400; step += 100) {
    auto staged = std::make_shared<Staged>();
    staged->model = test::make_model(step, kShapes);
    staged->counter = step;
    auto v = test::views(staged->model);
    v.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&staged->counter), 8}});
    client.send_checkpoint_owned(step, step * 1000, 1e-3, v, staged);
    released.push_back(staged);
    steps.push_back(step);
    staged.reset();  // only the client holds it now
    client.flush();  // paced, so that no output is coalesced away
    server.server().wait_outputs_idle();
  }
  for (const auto& w : released) EXPECT_TRUE(w.expired()) << "the client still holds a staged buffer after its ack";
  EXPECT_EQ(client.stats().checkpoints_acked, steps.size());
  std::ifstream in(out / "index.json");
  ASSERT_TRUE(in);
  const auto outputs = nlohmann::json::parse(in)["outputs"];
  EXPECT_EQ(outputs.size(), 6u);  // both shapes, covered from 200 on (100, 200 fill the window): 200..400
  for (const auto& rec : outputs) check_output(rec, steps, 2);
  EXPECT_THROW(client.send_checkpoint_owned(500, 0, 0, test::views(test::make_model(500, kShapes)), nullptr), Error);
}

TEST(ServeEndToEnd, MergeRequestAndStatusOverTheWire) {
  const auto out = test::temp_dir("e2e-req");
  test::ServerThread server(test::server_options(out, "linear:200", 1000000));
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "r";
  MergerClient client(co);
  std::vector<std::int64_t> steps;
  for (std::int64_t step = 100; step <= 500; step += 100) {
    auto model = test::make_model(step, kShapes);
    auto v = test::views(model);
    std::int64_t counter = step;
    v.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&counter), 8}});
    client.send_checkpoint(step, step * 1000, 1e-3, v);
    steps.push_back(step);
  }
  client.flush();

  test::RawPeer peer(server.endpoint());
  auto req = wire::envelope();
  auto* r = req.mutable_merge_request();
  r->set_request_id(42);
  r->set_run_id("r");
  r->set_shape("1-sqrt");
  r->set_window("200");
  peer.send(req);
  auto reply = peer.next(10000);
  ASSERT_TRUE(reply && reply->has_merge_reply()) << (reply ? reply->DebugString() : "timeout");
  EXPECT_EQ(reply->merge_reply().request_id(), 42u);
  EXPECT_EQ(reply->merge_reply().source_steps_size(), 2);  // (300, 500]: 400, 500
  nlohmann::json rec{{"spec", "1-sqrt"}, {"step", 500}, {"window", 200}, {"path", reply->merge_reply().path()},
                     {"sources", std::vector<std::int64_t>{400, 500}}};
  check_output(rec, steps, 2);

  // A bad request is answered with an error naming it.
  r->set_shape("nonsense");
  peer.send(req);
  reply = peer.next();
  ASSERT_TRUE(reply && reply->has_error());
  EXPECT_EQ(reply->error().code(), v1::BAD_REQUEST);
  EXPECT_EQ(reply->error().request_id(), 42u);

  auto st = wire::envelope();
  st.mutable_status_request();
  peer.send(st);
  reply = peer.next();
  ASSERT_TRUE(reply && reply->has_status_reply());
  EXPECT_EQ(reply->status_reply().checkpoints_received(), 5u);
  // linear:200 keeps the anchor at <= 300 and everything after: 300, 400, 500.
  EXPECT_EQ(reply->status_reply().window_size(), 3);
}

}  // namespace
}  // namespace wsm
