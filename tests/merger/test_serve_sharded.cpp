// Sharded training jobs end to end on 127.0.0.1 (issue 17): two daemons ("nodes") sharing one
// --out, four ranks (two per daemon) sending only their slices with the C++ client: row- and
// column-split tensors with uneven slices, a tensor held in several slices by one rank and not at
// all by another, a replicated bias, an integer held by rank 0 alone. Every merged output opens as
// one checkpoint equal to a float64 reference merge of the whole tensors, and `wsm convert` to a
// Hugging Face sharded directory gives the tensors' bytes of `wsm merge` over the unsharded
// checkpoints. Also: a daemon restarted while the ranks send.
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../run_command.h"
#include "wsm/formats/tensor_slice.h"
#include "wsm/schedules/decay.h"
#include "serve_test_util.h"

namespace wsm {
namespace {

using Shape = std::vector<std::int64_t>;

struct Global {
  std::string name;
  Shape shape;
};
const std::vector<Global> kTensors = {{"rows", {7, 5}}, {"cols", {3, 10}}, {"multi", {8, 3}}, {"bias", {5}}};

struct Held {
  std::size_t tensor;
  Shape offsets, lengths;
  bool replicated = false;
};
// Per rank: the blocks it holds (rank 3 holds none of "multi"; rank 0 two blocks of it).
const std::vector<std::vector<Held>> kRanks = {
    {{0, {0, 0}, {1, 5}}, {1, {0, 0}, {3, 3}}, {2, {0, 0}, {2, 3}}, {2, {6, 0}, {2, 3}}, {3, {0}, {5}, true}},
    {{0, {1, 0}, {3, 5}}, {1, {0, 3}, {3, 1}}, {2, {2, 0}, {1, 3}}, {3, {0}, {5}, true}},
    {{0, {4, 0}, {2, 5}}, {1, {0, 4}, {3, 5}}, {2, {3, 0}, {3, 3}}, {3, {0}, {5}, true}},
    {{0, {6, 0}, {1, 5}}, {1, {0, 9}, {3, 1}}, {3, {0}, {5}, true}},
};

// The whole tensor's values at a step (the shared formula), and a block of it in C order.
std::vector<float> whole(std::size_t t, std::int64_t step) {
  std::vector<float> v(element_count(kTensors[t].shape));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = test::tensor_value(static_cast<int>(t), step, i);
  return v;
}
std::vector<float> block(std::size_t t, std::int64_t step, const Held& h) {
  const auto& g = kTensors[t].shape;
  const auto all = whole(t, step);
  std::vector<float> out;
  for (std::size_t i = 0; i < all.size(); ++i) {
    std::uint64_t rest = i;
    bool inside = true;
    for (std::size_t d = g.size(); d-- > 0;) {
      const auto c = static_cast<std::int64_t>(rest % static_cast<std::uint64_t>(g[d]));
      rest /= static_cast<std::uint64_t>(g[d]);
      inside = inside && c >= h.offsets[d] && c < h.offsets[d] + h.lengths[d];
    }
    if (inside) out.push_back(all[i]);
  }
  return out;
}

// Sends rank r's share of `step` (the client snapshots it; the buffers may go right after).
void send_share(MergerClient& client, int rank, std::int64_t step) {
  std::vector<std::vector<float>> data;
  std::vector<TensorView> views;
  for (const auto& h : kRanks[static_cast<std::size_t>(rank)]) data.push_back(block(h.tensor, step, h));
  for (std::size_t i = 0; i < data.size(); ++i) {
    const auto& h = kRanks[static_cast<std::size_t>(rank)][i];
    views.push_back({kTensors[h.tensor].name, DType::f32, h.lengths, std::as_bytes(std::span(data[i])),
                     kTensors[h.tensor].shape, h.offsets, h.replicated});
  }
  std::int64_t counter = step;
  if (rank == 0) views.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&counter), 8}});
  client.send_checkpoint(step, step * 1000, 1e-3, views);
}

const std::string kHfConfig = R"({"model_type": "gpt2", "n_layer": 1, "torch_dtype": "bfloat16"})";

ClientOptions rank_options(const std::string& endpoint, int rank) {
  ClientOptions co;
  co.endpoint = endpoint;
  co.run_id = "shard";
  co.rank = rank;
  co.world_size = 4;
  co.local_world_size = 2;
  co.chunk_bytes = 24;  // several chunks per slice, not aligned to rows
  co.metadata = {{"hf.config", kHfConfig}};  // as wsm_client.hf sends it: every part carries it
  return co;
}

std::vector<nlohmann::json> index_records(const std::filesystem::path& file) {
  std::ifstream in(file);
  return nlohmann::json::parse(in)["outputs"].get<std::vector<nlohmann::json>>();
}

// The merged checkpoint at rec["path"] against sum_j c_j * theta_j in double.
void check_merged(const nlohmann::json& rec, const std::vector<std::int64_t>& all_steps) {
  const std::int64_t step = rec["step"];
  const auto sel = test::expected_window(rec, all_steps);
  const auto& src = sel.sources;
  ASSERT_EQ(rec["sources"].get<std::vector<std::int64_t>>(), src) << rec.dump();

  const auto ckpt = load_checkpoint(rec["path"].get<std::string>());
  EXPECT_EQ(ckpt.meta.step, step);
  ASSERT_EQ(ckpt.tensors.size(), kTensors.size() + 1);
  for (const auto& out : ckpt.tensors) {
    if (out.info.name == "step_counter") {
      std::int64_t v;
      std::memcpy(&v, out.data.data(), 8);
      EXPECT_EQ(v, step);  // copied from the newest, never averaged
      continue;
    }
    std::size_t t = 0;
    while (kTensors[t].name != out.info.name) ++t;
    EXPECT_EQ(out.info.shape, kTensors[t].shape);
    std::vector<std::vector<float>> inputs;
    for (auto s : src) inputs.push_back(whole(t, s));
    double max_err = 0;
    for (std::size_t i = 0; i < out.data.size() / 4; ++i) {
      double ref = 0;
      for (std::size_t j = 0; j < src.size(); ++j) ref += sel.weights[j] * static_cast<double>(inputs[j][i]);
      float got;
      std::memcpy(&got, out.data.data() + i * 4, 4);
      max_err = std::max(max_err, std::abs(got - ref));
    }
    EXPECT_LT(max_err, 2e-6) << out.info.name << " in " << rec["path"];
  }
}

std::map<std::string, std::vector<std::byte>> tensor_bytes(const std::filesystem::path& p) {
  std::map<std::string, std::vector<std::byte>> out;
  for (auto& t : load_checkpoint(p).tensors) out[t.info.name] = std::move(t.data);
  return out;
}

TEST(ServeSharded, TwoDaemonsFourRanksMatchTheWholeTensorReference) {
  const auto root = test::temp_dir("sharded");
  const auto out = root / "merged";  // shared by both daemons, as shared storage would be
  auto node = [&](int n) {
    auto o = test::server_options(out, "linear:300,1-sqrt:300", 200);
    o.runner.index_name = "index-node" + std::to_string(n) + ".json";
    return o;
  };
  test::ServerThread a(node(0)), b(node(1));
  std::vector<std::int64_t> steps;
  {
    std::vector<std::unique_ptr<MergerClient>> ranks;
    for (int r = 0; r < 4; ++r) ranks.push_back(std::make_unique<MergerClient>(rank_options(r < 2 ? a.endpoint() : b.endpoint(), r)));
    for (std::int64_t step = 0; step <= 800; step += 100) {
      for (int r = 0; r < 4; ++r) send_share(*ranks[static_cast<std::size_t>(r)], r, step);
      steps.push_back(step);
    }
    for (auto& c : ranks) ASSERT_NO_THROW(c->flush());
    for (auto& c : ranks) EXPECT_EQ(c->stats().checkpoints_acked, steps.size());
  }
  a.server().wait_outputs_idle();
  b.server().wait_outputs_idle();

  // Each daemon holds only its node's slices: ranks 0,1 or 2,3, the bias once.
  for (auto* s : {&a, &b}) {
    const auto& entries = s->server().window().entries("shard");
    ASSERT_FALSE(entries.empty());
    const auto& newest = *entries.back();
    ASSERT_TRUE(newest.part);
    EXPECT_EQ(newest.part->ranks, (s == &a ? std::vector<int>{0, 1} : std::vector<int>{2, 3}));
    std::uint64_t expect = 0;
    for (int r : newest.part->ranks)
      for (const auto& h : kRanks[static_cast<std::size_t>(r)])
        if (!h.replicated) expect += element_count(h.lengths) * 4;
    expect += 5 * 4 + (s == &a ? 8 : 0);  // one bias copy; the counter on rank 0's node
    EXPECT_EQ(newest.nbytes(), expect);
  }

  // Both daemons list every output, under the same step directory.
  const auto recs_a = index_records(out / "index-node0.json"), recs_b = index_records(out / "index-node1.json");
  ASSERT_EQ(recs_a.size(), recs_b.size());
  ASSERT_GE(recs_a.size(), 6u);  // linear and 1-sqrt at steps 400, 600, 800 at least
  std::set<std::string> paths;
  for (std::size_t i = 0; i < recs_a.size(); ++i) {
    EXPECT_EQ(recs_a[i]["path"], recs_b[i]["path"]);
    EXPECT_NE(recs_a[i]["part"], recs_b[i]["part"]);
    EXPECT_EQ(recs_a[i]["weights"], recs_b[i]["weights"]);
    paths.insert(recs_a[i]["path"].get<std::string>());
    check_merged(recs_a[i], steps);
  }
  EXPECT_EQ(paths.size(), recs_a.size());

  // wsm convert to a Hugging Face sharded directory == wsm merge of the unsharded checkpoints.
  nlohmann::json last;
  for (const auto& r : recs_a)
    if (r["spec"] == "1-sqrt") last = r;
  ASSERT_FALSE(last.is_null());
  std::string merge_args = "merge --shape 1-sqrt --window-steps 300 --out '" + (root / "offline.h5").string() + "'";
  for (auto step : steps) {
    Checkpoint c;
    c.meta.step = step;
    c.meta.tokens = step * 1000;
    c.meta.run_id = "shard";
    for (std::size_t t = 0; t < kTensors.size(); ++t) {
      const auto v = whole(t, step);
      c.tensors.push_back({{kTensors[t].name, DType::f32, kTensors[t].shape}, {}});
      c.tensors.back().data.resize(v.size() * 4);
      std::memcpy(c.tensors.back().data.data(), v.data(), v.size() * 4);
    }
    c.tensors.push_back({{"step_counter", DType::i64, {1}}, std::vector<std::byte>(8)});
    std::memcpy(c.tensors.back().data.data(), &step, 8);
    const auto file = root / ("full_" + std::to_string(step) + ".h5");
    save_checkpoint(file, c);
    merge_args += " '" + file.string() + "'";
  }
  const auto merged = test::run_wsm(merge_args);
  ASSERT_EQ(merged.rc, 0) << merged.err;
  const auto hf_sharded = root / "hf-from-parts", hf_offline = root / "hf-from-offline";
  for (const auto& [from, to] : {std::pair{std::filesystem::path(last["path"].get<std::string>()), hf_sharded},
                                  std::pair{root / "offline.h5", hf_offline}}) {
    const auto converted = test::run_wsm("convert '" + from.string() + "' '" + to.string() + "' --shard-size 100B");
    ASSERT_EQ(converted.rc, 0) << converted.err;
  }
  EXPECT_TRUE(std::filesystem::exists(hf_sharded / "model.safetensors.index.json"));
  // config.json from the parts' hf.config, its dtype the one written (f32), not the one sent.
  nlohmann::json config = nlohmann::json::parse(test::slurp(hf_sharded / "config.json"));
  nlohmann::json expected = nlohmann::json::parse(kHfConfig);
  expected["torch_dtype"] = "float32";
  expected["dtype"] = "float32";
  EXPECT_EQ(config, expected);
  EXPECT_FALSE(std::filesystem::exists(hf_offline / "config.json"));  // no hf.config, no template: none
  const auto from_parts = tensor_bytes(hf_sharded), offline = tensor_bytes(hf_offline);
  ASSERT_EQ(from_parts.size(), offline.size());
  for (const auto& [name, bytes] : offline) EXPECT_EQ(from_parts.at(name), bytes) << name;

  // `wsm inspect` opens the step directory as one checkpoint.
  const auto inspect = test::run_wsm("inspect '" + last["path"].get<std::string>() + "' --json");
  ASSERT_EQ(inspect.rc, 0) << inspect.err;
  EXPECT_EQ(nlohmann::json::parse(inspect.out)["format"], "multi-part");
}

// --format hf cannot apply to a sharded run (each daemon writes its node's part): its ranks are
// refused at hello with a message naming `wsm convert`, rather than the format being ignored.
TEST(ServeSharded, FormatHfRefusesAShardedRunNamingConvert) {
  const auto root = test::temp_dir("sharded-hf");
  auto o = test::server_options(root / "merged", "linear:300", 200);
  o.core.output.format = merger::OutputFormat::hf;
  test::ServerThread a(o);
  auto co = rank_options(a.endpoint(), 0);
  co.policy = OutagePolicy::fail_fast;
  MergerClient client(co);
  std::string error;
  try {
    send_share(client, 0, 100);
    client.flush();
  } catch (const std::exception& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("is sharded"), std::string::npos) << error;
  EXPECT_NE(error.find("wsm convert"), std::string::npos) << error;
  EXPECT_EQ(client.stats().checkpoints_acked, 0u);
  std::filesystem::remove_all(root);
}

TEST(ServeSharded, DaemonRestartedWhileRanksSendResumesFromTheResend) {
  const auto out = test::temp_dir("sharded-restart");
  const auto endpoint = test::free_loopback_endpoint();
  auto opts = test::server_options(out, "linear:100", 100);
  opts.listen = endpoint;
  auto server = std::make_unique<test::ServerThread>(opts);
  std::vector<std::unique_ptr<MergerClient>> ranks;
  for (int r = 0; r < 2; ++r) {
    auto co = rank_options(endpoint, r);
    co.world_size = 2;
    co.local_world_size = 2;
    co.stall_timeout_ms = 500;
    ranks.push_back(std::make_unique<MergerClient>(co));
  }
  // Two ranks of a world of two on one node: rank r sends blocks of ranks 2r and 2r+1 of the
  // four-rank layout, so the slices still tile.
  auto send = [&](int r, std::int64_t step) {
    std::vector<std::vector<float>> data;
    std::vector<TensorView> views;
    for (int q : {2 * r, 2 * r + 1})
      for (const auto& h : kRanks[static_cast<std::size_t>(q)]) {
        if (h.replicated && q % 2) continue;
        data.push_back(block(h.tensor, step, h));
        views.push_back({kTensors[h.tensor].name, DType::f32, h.lengths, std::as_bytes(std::span(data.back())),
                         kTensors[h.tensor].shape, h.offsets, h.replicated});
      }
    std::int64_t counter = step;
    if (r == 0) views.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&counter), 8}});
    ranks[static_cast<std::size_t>(r)]->send_checkpoint(step, step * 1000, 1e-3, views);
  };
  send(0, 100);
  send(1, 100);
  ASSERT_NO_THROW(ranks[0]->flush());
  // Rank 0 delivers step 200 and waits for rank 1; the daemon goes away and comes back.
  const auto sent = ranks[0]->stats().bytes_sent;
  send(0, 200);
  ASSERT_TRUE(test::wait_for([&] { return ranks[0]->stats().bytes_sent > sent; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its End reaches the daemon
  server.reset();
  server = std::make_unique<test::ServerThread>(opts);
  send(1, 200);
  send(0, 300);
  send(1, 300);
  for (auto& c : ranks) ASSERT_NO_THROW(c->flush());
  EXPECT_GE(ranks[0]->stats().resends, 1u);  // its delivered step 200 went again to the new daemon
  server->server().wait_outputs_idle();
  // The new daemon has steps 200 and 300 whole (it never saw 100: no --store), and wrote the
  // step-300 output from them.
  const auto& entries = server->server().window().entries("shard");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0]->step, 200);
  EXPECT_EQ(entries[1]->step, 300);
  const auto recs = index_records(out / "index.json");
  ASSERT_FALSE(recs.empty());
  check_merged(recs.back(), {200, 300});
}

}  // namespace
}  // namespace wsm
