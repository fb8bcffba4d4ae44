// Model metadata at Hello (docs/protocol.md, "Model metadata"), on MergerCore without sockets: it
// reaches every emission job and the --store file of each checkpoint (read back by the HDF5 reader)
// and a restarted core's jobs; wsm.* keys, NUL bytes, more than 256 keys or 1 MiB are refused with
// BAD_REQUEST and the core serves on; a later Hello of the run with other metadata is MANIFEST_MISMATCH, as is a rank
// of a sharded run whose metadata differs from the other ranks'.
#include <gtest/gtest.h>

#include "core_harness.h"
#include "merger/daemon/emission_runner.h"
#include "merger/daemon/hello_metadata.h"

namespace wsm::merger {
namespace {

const std::vector<std::vector<std::int64_t>> kShapes = {{8, 4}};

v1::Envelope hello_with(const std::string& run, const std::vector<test::OwnedTensor>& model, const ModelMetadata& metadata) {
  auto env = test::hello(run, model);
  env.mutable_hello()->mutable_metadata()->insert(metadata.begin(), metadata.end());
  return env;
}

bool welcomed(const std::vector<v1::Envelope>& replies) {
  return replies.size() == 1 && replies[0].has_welcome();
}

std::string error_text(const std::vector<v1::Envelope>& replies) {
  for (const auto& r : replies)
    if (r.has_error()) return r.error().message();
  return "";
}

// Acked, and an Ack only.
bool acked(const std::vector<v1::Envelope>& replies, std::int64_t step) {
  return replies.size() == 1 && replies[0].has_ack() && replies[0].ack().step() == step;
}

const ModelMetadata kMeta = {{"model.n_layer", "2"}, {"hf.config", R"({"hidden_size": 32, "name": "tiny"})"},
                             {"data.vocab", "0a2021"}};

TEST(ServeMetadata, ReachesEveryJobAndTheStoreFileAndSurvivesARestart) {
  auto o = options("linear:200", 100);
  o.store.store_dir = test::temp_dir("meta-store");
  const auto model = test::make_model(0, kShapes);
  {
    CoreHarness h(o);
    ASSERT_TRUE(welcomed(bodies(h.send("a", hello_with("r", model, kMeta)), "a")));
    for (std::int64_t step = 0; step <= 200; step += 100) ASSERT_TRUE(acked(h.checkpoint("a", step, model), step));
    ASSERT_FALSE(h.jobs.empty());
    int outputs = 0;
    for (const auto& job : h.jobs) {
      ASSERT_TRUE(job.model);
      EXPECT_EQ(*job.model, kMeta);
      // Every output's metadata (full merges and running sums): the model's, then the provenance.
      std::vector<EmissionOutput> all = job.outputs;
      for (const auto& sum : job.sums) all.push_back(sum.output);
      for (const auto& out : all) {
        const auto extra = emission_metadata(job, out, "full-merge", "f32");
        EXPECT_EQ(model_metadata(extra), kMeta);
        EXPECT_TRUE(extra.contains("wsm.provenance"));
        ++outputs;
      }
    }
    EXPECT_GT(outputs, 0);
    h.core->flush_store();
    // The store file holds it, as the HDF5 reader sees it.
    const auto& entries = h.core->store().entries("r");
    ASSERT_FALSE(entries.empty());
    ASSERT_FALSE(entries.back()->file.empty());
    EXPECT_EQ(model_metadata(open_checkpoint(entries.back()->file)->meta().extra), kMeta);
  }
  // Restarted from the store: a merge request (no Hello) gets the metadata from the files.
  CoreHarness h(o);
  h.core->restore();
  h.send("q", test::merge_request(7, "r", "linear", "200"));
  ASSERT_EQ(h.jobs.size(), 1u);
  ASSERT_TRUE(h.jobs[0].model);
  EXPECT_EQ(*h.jobs[0].model, kMeta);
  // The restored window fixes the run's metadata: other metadata is refused, the same is welcome.
  auto other = kMeta;
  other["model.n_layer"] = "3";
  const auto refused = bodies(h.send("b", hello_with("r", model, other)), "b");
  EXPECT_EQ(error_of(refused), v1::MANIFEST_MISMATCH);
  EXPECT_NE(error_text(refused).find("'model.n_layer'"), std::string::npos) << error_text(refused);
  EXPECT_TRUE(welcomed(bodies(h.send("b", hello_with("r", model, kMeta)), "b")));
  ASSERT_TRUE(acked(h.checkpoint("b", 300, model), 300));
  EXPECT_EQ(*h.core->store().entries("r").back()->model, kMeta);
}

TEST(ServeMetadata, ReservedKeysAndOversizeAreRefusedAndTheCoreServesOn) {
  auto o = options("linear:200", 100);
  o.store.store_dir = test::temp_dir("meta-limit-store");
  CoreHarness h(o);
  const auto model = test::make_model(0, kShapes);
  // "format" is safetensors' own "pt" (issue 23 item 15: a client's value replaced it).
  for (const char* key : {"wsm.provenance", "wsm.step", "total_size", "format", ""}) {
    auto spoof = kMeta;
    spoof[key] = "{}";
    const auto replies = bodies(h.send("a", hello_with("r", model, spoof)), "a");
    EXPECT_EQ(error_of(replies), v1::BAD_REQUEST) << key;
    EXPECT_NE(error_text(replies).find("reserved"), std::string::npos) << error_text(replies);
  }
  // A NUL byte would cut an HDF5 attribute short.
  const auto nul = bodies(h.send("a", hello_with("r", model, {{"k", std::string("a\0b", 3)}})), "a");
  EXPECT_EQ(error_of(nul), v1::BAD_REQUEST);
  EXPECT_NE(error_text(nul).find("NUL"), std::string::npos) << error_text(nul);
  // Keys and values together: exactly 1 MiB is accepted, one byte more is not.
  const ModelMetadata at_limit = {{"k", std::string(kMaxModelMetadataBytes - 1, 'x')}};
  ModelMetadata over = at_limit;
  over["k"] += 'x';
  const auto replies = bodies(h.send("a", hello_with("big", model, over)), "a");
  EXPECT_EQ(error_of(replies), v1::BAD_REQUEST);
  EXPECT_NE(error_text(replies).find(std::to_string(kMaxModelMetadataBytes)), std::string::npos) << error_text(replies);
  // Nothing of the refused Hellos stayed: the same peer starts the run with good metadata.
  ASSERT_TRUE(welcomed(bodies(h.send("a", hello_with("r", model, kMeta)), "a")));
  EXPECT_TRUE(acked(h.checkpoint("a", 0, model), 0));
  ASSERT_TRUE(welcomed(bodies(h.send("c", hello_with("big", model, at_limit)), "c")));
  EXPECT_TRUE(acked(h.checkpoint("c", 0, model), 0));
  EXPECT_EQ(*h.core->store().entries("big").back()->model, at_limit);
  // At most 256 keys (each an HDF5 attribute).
  ModelMetadata many;
  for (std::size_t i = 0; i <= kMaxModelMetadataKeys; ++i) many["key." + std::to_string(i)] = std::string(48, 'v');
  const auto too_many = bodies(h.send("d", hello_with("many", model, many)), "d");
  EXPECT_EQ(error_of(too_many), v1::BAD_REQUEST);
  EXPECT_NE(error_text(too_many).find("limit of " + std::to_string(kMaxModelMetadataKeys)), std::string::npos)
      << error_text(too_many);
  many.erase(many.begin());
  // A 1 MiB value fits an HDF5 attribute (a variable-length string, in the global heap); 256 keys
  // are 256 attributes.
  ASSERT_TRUE(welcomed(bodies(h.send("d", hello_with("many", model, many)), "d")));
  EXPECT_TRUE(acked(h.checkpoint("d", 0, model), 0));
  h.core->flush_store();
  for (const auto& [run, sent] : {std::pair{"big", at_limit}, std::pair{"many", many}})
    EXPECT_EQ(model_metadata(open_checkpoint(h.core->store().entries(run).back()->file)->meta().extra), sent) << run;
}

// Issue 23 item 9: a key is an HDF5 attribute name (object header, 64 KiB). A 70,000-byte key was
// acknowledged, then its --store file failed for good; now it is refused at Hello, and a key at
// the limit is stored and read back by the HDF5 reader.
TEST(ServeMetadata, AKeyHdf5CannotStoreIsRefusedAtHello) {
  auto o = options("linear:200", 100);
  o.store.store_dir = test::temp_dir("meta-key-store");
  CoreHarness h(o);
  const auto model = test::make_model(0, kShapes);
  const auto refused = bodies(h.send("a", hello_with("long", model, {{std::string(70000, 'k'), "v"}})), "a");
  EXPECT_EQ(error_of(refused), v1::BAD_REQUEST);
  EXPECT_NE(error_text(refused).find("limit of " + std::to_string(kMaxModelMetadataKeyBytes) + " bytes per key"),
            std::string::npos)
      << error_text(refused);
  const ModelMetadata at_limit = {{std::string(kMaxModelMetadataKeyBytes, 'k'), "v"}, {"model.n_layer", "2"}};
  ASSERT_TRUE(welcomed(bodies(h.send("a", hello_with("long", model, at_limit)), "a")));
  ASSERT_TRUE(acked(h.checkpoint("a", 0, model), 0));
  h.core->flush_store();
  const auto& entries = h.core->store().entries("long");
  ASSERT_EQ(entries.size(), 1u);
  ASSERT_FALSE(entries[0]->file.empty());
  EXPECT_EQ(model_metadata(open_checkpoint(entries[0]->file)->meta().extra), at_limit);
}

TEST(ServeMetadata, ALaterHelloWithOtherMetadataIsAManifestMismatch) {
  CoreHarness h(options("linear:200", 100));
  const auto model = test::make_model(0, kShapes);
  ASSERT_TRUE(welcomed(bodies(h.send("a", hello_with("r", model, kMeta)), "a")));
  auto more = kMeta;
  more["extra"] = "1";
  auto fewer = kMeta;
  fewer.erase("hf.config");
  for (const auto& [metadata, named] : std::vector<std::pair<ModelMetadata, std::string>>{
           {more, "'extra' is new"}, {fewer, "'hf.config' is missing"}, {{}, "'data.vocab' is missing"}}) {
    const auto replies = bodies(h.send("b", hello_with("r", model, metadata)), "b");
    EXPECT_EQ(error_of(replies), v1::MANIFEST_MISMATCH);
    EXPECT_NE(error_text(replies).find(named), std::string::npos) << error_text(replies);
  }
  EXPECT_TRUE(welcomed(bodies(h.send("b", hello_with("r", model, kMeta)), "b")));
  // A run started without metadata keeps none: a Hello that brings some is refused too.
  ASSERT_TRUE(welcomed(bodies(h.send("c", test::hello("plain", model)), "c")));
  EXPECT_EQ(error_of(bodies(h.send("d", hello_with("plain", model, kMeta)), "d")), v1::MANIFEST_MISMATCH);
  ASSERT_TRUE(acked(h.checkpoint("c", 0, model), 0));
  EXPECT_FALSE(h.core->store().entries("plain").back()->model);
}

TEST(ServeMetadata, ShardedRanksMustSendTheSameMetadata) {
  CoreHarness h(options("linear:200", 100));
  const auto model = test::make_model(0, kShapes);
  auto rank_hello = [&](std::uint32_t rank, const ModelMetadata& metadata) {
    auto env = hello_with("sh", model, metadata);
    auto* hello = env.mutable_hello();
    hello->set_protocol_version(wire::kShardedProtocolVersion);
    hello->mutable_group()->set_rank(rank);
    hello->mutable_group()->set_world_size(2);
    hello->mutable_group()->set_local_world_size(2);
    // Each rank holds half of the rows.
    auto* spec = hello->mutable_manifest(0);
    spec->set_shape(0, 4);
    spec->add_global_shape(8);
    spec->add_global_shape(4);
    spec->add_offsets(rank * 4);
    spec->add_offsets(0);
    return env;
  };
  ASSERT_TRUE(welcomed(bodies(h.send("r0", rank_hello(0, kMeta)), "r0")));
  auto other = kMeta;
  other["hf.config"] = "{}";
  EXPECT_EQ(error_of(bodies(h.send("r1", rank_hello(1, other)), "r1")), v1::MANIFEST_MISMATCH);
  EXPECT_TRUE(welcomed(bodies(h.send("r1", rank_hello(1, kMeta)), "r1")));
}

}  // namespace
}  // namespace wsm::merger
