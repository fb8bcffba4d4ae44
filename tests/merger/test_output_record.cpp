// OutputRecord (an index.json record, typed): a record built in code round-trips to_json ->
// from_json unchanged; records written by the daemon before OutputRecord existed (taken verbatim
// from index.json files of test runs) parse into the right fields and write back byte for byte;
// keys of other versions and values of unexpected types are kept, never dropped.
#include <gtest/gtest.h>

#include "merger/daemon/output_record.h"
#include "wsm/core/error.h"

namespace wsm::merger {
namespace {

// Written by wsm serve (a running sum of a sharded run, part of rank 0 of 2).
constexpr const char* kShardedRunningSum =
    R"json({"axis": "steps", "dtype": "as-input", "file": "shard/linear_w100/step_000000000300", "label": "linear_w100", "method": "running-sum (uniform)", "part": "part-rank00000.h5", "path": "/tmp/wsm-sharded-restart-24927-0/shard/linear_w100/step_000000000300", "ranks": [0, 1], "request_id": 0, "run_id": "shard", "running_sum": {"read": 1, "recomputed": true, "updates_since_recompute": 0}, "sampling": "w_i=f((p_i-p_0)/window)", "source_tokens": [300000], "sources": [300], "spec": "linear", "step": 300, "tokens": 300000, "weights": [1.0], "window": 100, "world_size": 2})json";
// A full merge, scored.
constexpr const char* kScored =
    R"json({"axis": "steps", "dtype": "as-input", "eval": {"evaluator": "/usr/bin/python3 /tmp/wsm-readout-hf-32213-0/hf_sum.py {path}", "score": 82.10982513427734, "seconds": 0.183591176}, "file": "ev/1-sqrt_w300/step_000000000400", "label": "1-sqrt_w300", "method": "full-merge", "path": "/tmp/wsm-readout-hf-32213-0/out/ev/1-sqrt_w300/step_000000000400", "request_id": 0, "run_id": "ev", "sampling": "w_i=f((p_i-p_0)/window)", "source_tokens": [2000, 3000, 4000], "sources": [200, 300, 400], "spec": "1-sqrt", "step": 400, "tokens": 4000, "weights": [0.5773502691896257, 0.2391463117381003, 0.18350341907227397], "window": 300})json";
// An on-demand merge.
constexpr const char* kRequest =
    R"json({"axis": "steps", "dtype": "as-input", "file": "r/request-42_1-sqrt_w200/step_000000000500.h5", "label": "request-42_1-sqrt_w200", "method": "full-merge", "path": "/tmp/wsm-e2e-req-5693-0/r/request-42_1-sqrt_w200/step_000000000500.h5", "request_id": 42, "run_id": "r", "sampling": "w_i=f((p_i-p_0)/window)", "source_tokens": [400000, 500000], "sources": [400, 500], "spec": "1-sqrt", "step": 500, "tokens": 500000, "weights": [0.7071067811865476, 0.2928932188134524], "window": 200})json";
// Listed on a restart from the file's provenance (no request_id).
constexpr const char* kRecovered =
    R"json({"axis": "steps", "dtype": "as-input", "file": "run/linear_w200/step_000000000400.h5", "label": "linear_w200", "method": "running-sum (uniform)", "path": "/tmp/wsm-sweep-out-10509-0/run/linear_w200/step_000000000400.h5", "recovered": true, "run_id": "run", "sampling": "w_i=f((p_i-p_0)/window)", "source_tokens": [300, 400], "sources": [300, 400], "spec": "linear", "step": 400, "tokens": 400, "weights": [0.5, 0.5], "window": 200})json";

OutputRecord built() {
  OutputRecord r;
  r.run_id = "run";
  r.label = "1-sqrt_w800";
  r.spec = "1-sqrt";
  r.window = 800;
  r.axis = "steps";
  r.step = 1200;
  r.tokens = 1200 * 4096;
  r.path = "/out/run/1-sqrt_w800/step_000000001200.h5";
  r.sources = {400, 800, 1200};
  r.source_tokens = {400 * 4096, 800 * 4096, 1200 * 4096};
  r.weights = {0.5, 0.3, 0.2};
  r.sampling = "w_i=f((p_i-p_0)/window)";
  r.dtype = "bf16";
  r.method = "running-sum (uniform)";
  r.request_id = 0;
  r.file = "run/1-sqrt_w800/step_000000001200.h5";
  r.part = OutputRecord::Part{"part-rank00004.h5", 8, {4, 5, 6, 7}};
  r.running_sum = OutputRecord::RunningSum{false, 12, 2};
  r.eval = nlohmann::json{{"evaluator", "e"}, {"score", 3.25}, {"seconds", 0.5}};
  return r;
}

TEST(OutputRecord, RoundTripsUnchanged) {
  const OutputRecord r = built();
  const nlohmann::json j = r;
  EXPECT_EQ(j.get<OutputRecord>(), r);
  // The keys index.json has always used, with the values given.
  EXPECT_EQ(j["sources"], nlohmann::json::parse("[400, 800, 1200]"));
  EXPECT_EQ(j["part"], "part-rank00004.h5");
  EXPECT_EQ(j["world_size"], 8);
  EXPECT_EQ(j["running_sum"]["updates_since_recompute"], 12);
  EXPECT_EQ(j["eval"]["score"], 3.25);
  // Optional keys are absent when unset.
  OutputRecord bare = built();
  bare.dtype.reset();
  bare.request_id.reset();
  bare.part.reset();
  bare.running_sum.reset();
  bare.eval.reset();
  const nlohmann::json b = bare;
  for (const char* key : {"dtype", "request_id", "part", "world_size", "ranks", "running_sum", "eval", "recovered"})
    EXPECT_FALSE(b.contains(key)) << key;
  EXPECT_EQ(b.get<OutputRecord>(), bare);
}

TEST(OutputRecord, RecordsOfTheDaemonParseAndWriteBackByteForByte) {
  for (const char* text : {kShardedRunningSum, kScored, kRequest, kRecovered}) {
    const auto j = nlohmann::json::parse(text);
    const auto r = j.get<OutputRecord>();
    EXPECT_TRUE(r.unknown.empty()) << text;  // every key known, with the type written
    EXPECT_EQ(nlohmann::json(r).dump(2), j.dump(2)) << text;
  }
  const auto sharded = nlohmann::json::parse(kShardedRunningSum).get<OutputRecord>();
  EXPECT_EQ(sharded.run_id, "shard");
  EXPECT_EQ(sharded.step, 300);
  EXPECT_EQ(sharded.weights, std::vector<double>{1.0});
  ASSERT_TRUE(sharded.part);
  EXPECT_EQ(sharded.part->file, "part-rank00000.h5");
  EXPECT_EQ(sharded.part->world_size, 2);
  EXPECT_EQ(sharded.part->ranks, (std::vector<int>{0, 1}));
  ASSERT_TRUE(sharded.running_sum);
  EXPECT_TRUE(sharded.running_sum->recomputed);
  EXPECT_EQ(sharded.running_sum->read, 1u);
  const auto scored = nlohmann::json::parse(kScored).get<OutputRecord>();
  ASSERT_TRUE(scored.eval);
  EXPECT_DOUBLE_EQ((*scored.eval)["score"].get<double>(), 82.10982513427734);
  EXPECT_EQ(scored.sources, (std::vector<std::int64_t>{200, 300, 400}));
  EXPECT_EQ(nlohmann::json::parse(kRequest).get<OutputRecord>().request_id, 42u);
  const auto recovered = nlohmann::json::parse(kRecovered).get<OutputRecord>();
  EXPECT_EQ(recovered.recovered, true);
  EXPECT_FALSE(recovered.request_id);
}

TEST(OutputRecord, KeysOfOtherVersionsAndOddValuesAreKept) {
  auto j = nlohmann::json::parse(kRequest);
  j["seq"] = 7;                     // the feed's number, or a later version's key
  j["window"] = "200 steps";        // not the type this version writes
  j["weights"] = {1, 0};            // integers: written back as read, not as 1.0, 0.0
  j["part"] = "part-rank00000.h5";  // a part without world_size and ranks is not a Part
  const auto r = j.get<OutputRecord>();
  EXPECT_FALSE(r.part);
  EXPECT_EQ(r.unknown.size(), 4u);
  EXPECT_EQ(nlohmann::json(r), j);
  EXPECT_EQ(nlohmann::json(r).dump(), j.dump());
  EXPECT_THROW(nlohmann::json::array().get<OutputRecord>(), Error);
}

}  // namespace
}  // namespace wsm::merger
