// RunRegistry (per run: manifest, metadata, CURVE owner, last step; their RAM): the first Hello
// fixes owner and metadata, the bytes counted are the manifests' footprints plus the metadata's
// sizes (computed here independently), and a run nothing uses is forgotten down to zero bytes.
#include <gtest/gtest.h>

#include "merger/daemon/run_registry.h"

namespace wsm::merger {
namespace {

std::shared_ptr<const Manifest> manifest(std::vector<std::string> names) {
  auto m = std::make_shared<Manifest>();
  for (auto& n : names) {
    TensorInfo t;
    t.name = n;
    t.dtype = DType::f32;
    t.shape = {2, 3};
    m->push_back(t);
  }
  return m;
}

// What manifest_footprint should say, counted the long way.
std::uint64_t footprint(const Manifest& m) {
  std::uint64_t bytes = sizeof(Manifest) + m.capacity() * sizeof(TensorInfo);
  for (const auto& t : m) bytes += t.name.capacity() + 1 + t.shape.capacity() * sizeof(std::int64_t);
  return bytes;
}

v1::ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const wire::ProtocolError& e) {
    return e.code();
  }
  return v1::ERROR_UNSPECIFIED;
}

TEST(RunRegistry, OwnerIsTheFirstKey) {
  RunRegistry r;
  r.adopt_owner("run", "");  // no CURVE: nobody's
  EXPECT_EQ(code_of([&] { r.check_owner("run", "key-b"); }), v1::ERROR_UNSPECIFIED);
  r.adopt_owner("run", "key-a");
  r.adopt_owner("run", "key-b");  // the first stays
  EXPECT_EQ(code_of([&] { r.check_owner("run", "key-a"); }), v1::ERROR_UNSPECIFIED);
  EXPECT_EQ(code_of([&] { r.check_owner("run", "key-b"); }), v1::BAD_REQUEST);
  EXPECT_EQ(code_of([&] { r.check_owner("other", "key-b"); }), v1::ERROR_UNSPECIFIED);
}

TEST(RunRegistry, MetadataIsTheFirstHellosOrTheWindows) {
  RunRegistry r;
  const ModelMetadata a{{"config", "A"}}, b{{"config", "B"}};
  // Unknown run: compared with the stored window's newest checkpoint, if any.
  EXPECT_EQ(code_of([&] { r.check_metadata("run", &b, &a); }), v1::MANIFEST_MISMATCH);
  EXPECT_EQ(code_of([&] { r.check_metadata("run", &b, std::nullopt); }), v1::ERROR_UNSPECIFIED);
  r.adopt_metadata("run", std::make_shared<const ModelMetadata>(a));
  r.adopt_metadata("run", std::make_shared<const ModelMetadata>(b));  // the first stays
  EXPECT_EQ(*r.metadata("run"), a);
  EXPECT_EQ(code_of([&] { r.check_metadata("run", &a, std::nullopt); }), v1::ERROR_UNSPECIFIED);
  EXPECT_EQ(code_of([&] { r.check_metadata("run", &b, &b); }), v1::MANIFEST_MISMATCH);  // the run's, not the window's
  EXPECT_EQ(code_of([&] { r.check_metadata("run", nullptr, std::nullopt); }), v1::MANIFEST_MISMATCH);
}

TEST(RunRegistry, BytesCountManifestsAndMetadataUntilForgotten) {
  RunRegistry r;
  const auto m1 = manifest({"w1", "a-longer-tensor-name-than-sso-holds"});
  const auto m2 = manifest({"w1"});
  const ModelMetadata meta{{"config.json", std::string(1000, 'x')}};
  EXPECT_EQ(r.adopt_manifest("r1", m1), m1);
  EXPECT_EQ(r.adopt_manifest("r1", manifest({"w1"})), m1);  // the run's first manifest is shared
  r.adopt_manifest("r2", m2);
  r.adopt_metadata("r1", std::make_shared<const ModelMetadata>(meta));
  r.adopt_metadata("r2", nullptr);
  EXPECT_TRUE(r.has_metadata("r2"));
  EXPECT_EQ(r.metadata("r2"), nullptr);
  const std::uint64_t meta_bytes = std::string("config.json").size() + 1000;
  EXPECT_EQ(r.bytes(), footprint(*m1) + footprint(*m2) + meta_bytes);
  r.charge(500);  // a sharded rank's slices
  r.release(500);
  EXPECT_EQ(r.manifests(), 2u);

  r.adopt_owner("r1", "key");
  r.forget_if_unused("r1", {.sessions = true});
  r.forget_if_unused("r1", {.window = true});
  EXPECT_EQ(r.manifest("r1"), m1);
  r.forget_if_unused("r1", {});
  EXPECT_EQ(r.manifest("r1"), nullptr);
  EXPECT_FALSE(r.has_metadata("r1"));
  EXPECT_EQ(code_of([&] { r.check_owner("r1", "another"); }), v1::ERROR_UNSPECIFIED);  // starts afresh
  EXPECT_EQ(r.bytes(), footprint(*m2));
  r.forget_if_unused("r2", {});
  EXPECT_EQ(r.bytes(), 0u);
  EXPECT_EQ(r.manifests(), 0u);
}

TEST(RunRegistry, LastStepAdvances) {
  RunRegistry r;
  EXPECT_EQ(r.last_step("run"), -1);
  EXPECT_EQ(r.advance("run", 100), -1);
  EXPECT_EQ(r.advance("run", 200), 100);
  EXPECT_EQ(r.last_step("run"), 200);
  r.forget_if_unused("run", {});  // the window's history stays
  EXPECT_EQ(r.last_step("run"), 200);
}

}  // namespace
}  // namespace wsm::merger
