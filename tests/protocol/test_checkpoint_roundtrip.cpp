// Round trips through every format and dtype: the reference is the bytes we wrote.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/sharded_checkpoint.h"
#include "tests/protocol/test_util.h"

namespace wsm {
namespace {

using test::TempDir;

struct FormatCase {
  std::string name;
  std::string file;
  WriteOptions options;
  std::string format;
};

std::vector<FormatCase> format_cases() {
  return {
      {"hdf5", "ck.h5", {}, "hdf5"},
      {"hdf5_chunked_deflate", "ck.hdf5", {.shard_bytes = 0, .compression = 6, .chunk_bytes = 40}, "hdf5"},
      {"safetensors", "ck.safetensors", {}, "safetensors"},
      {"sharded", "ck_dir", {.shard_bytes = 100}, "safetensors-sharded"},
      {"sharded_one", "ck_one", {}, "safetensors-sharded"},
  };
}

class RoundTrip : public ::testing::TestWithParam<FormatCase> {};

TEST_P(RoundTrip, EveryDtypeExact) {
  TempDir dir;
  const auto& fc = GetParam();
  const Checkpoint in = test::sample_checkpoint(7);
  save_checkpoint(dir / fc.file, in, fc.options);
  const Checkpoint out = load_checkpoint(dir / fc.file);
  EXPECT_EQ(out.meta, in.meta);
  ASSERT_EQ(out.tensors.size(), in.tensors.size());
  for (std::size_t i = 0; i < in.tensors.size(); ++i) {
    EXPECT_EQ(out.tensors[i].info, in.tensors[i].info) << in.tensors[i].info.name;
    EXPECT_TRUE(out.tensors[i].data == in.tensors[i].data) << in.tensors[i].info.name;
  }
  EXPECT_EQ(open_checkpoint(dir / fc.file)->format(), fc.format);
  // Nothing but the output is left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST_P(RoundTrip, RandomByteRangesAndUnalignedWrites) {
  TempDir dir;
  const auto& fc = GetParam();
  std::vector<Tensor> ts = {test::random_tensor("a.b/c%d", DType::f32, {4, 3, 5}, 1),
                            test::random_tensor(".", DType::bf16, {7, 9}, 2),
                            test::random_tensor("scalar", DType::f64, {}, 3),
                            test::random_tensor("x", DType::i64, {2, 2, 2, 3}, 4)};
  std::vector<TensorInfo> infos;
  for (const auto& t : ts) infos.push_back(t.info);
  CheckpointMeta meta;
  meta.lr = 0.1 + 0.2;  // not representable in short decimal: must round-trip exactly anyway
  {
    auto w = create_checkpoint(dir / fc.file, meta, infos, fc.options);
    std::mt19937 rng(11);
    // Each tensor in random unaligned pieces, tensors interleaved in reverse order.
    for (auto it = ts.rbegin(); it != ts.rend(); ++it) {
      std::uint64_t off = 0;
      std::vector<std::pair<std::uint64_t, std::uint64_t>> pieces;
      while (off < it->data.size()) {
        const std::uint64_t n = std::min<std::uint64_t>(1 + rng() % 13, it->data.size() - off);
        pieces.emplace_back(off, n);
        off += n;
      }
      std::shuffle(pieces.begin(), pieces.end(), rng);
      for (auto [o, n] : pieces) w->write(it->info.name, o, std::span(it->data).subspan(o, n));
    }
    w->commit();
  }
  auto r = open_checkpoint(dir / fc.file);
  EXPECT_EQ(r->meta(), meta);
  ASSERT_EQ(r->tensors(), infos);  // order kept
  std::mt19937 rng(5);
  for (const auto& t : ts) {
    for (int k = 0; k < 40; ++k) {
      const std::uint64_t a = rng() % (t.data.size() + 1);
      const std::uint64_t n = rng() % (t.data.size() - a + 1);
      std::vector<std::byte> got(n);
      r->read(t.info.name, a, got);
      EXPECT_TRUE(std::equal(got.begin(), got.end(), t.data.begin() + static_cast<std::ptrdiff_t>(a)))
          << t.info.name << " [" << a << ", " << a + n << ")";
    }
  }
  std::vector<std::byte> one(1);
  EXPECT_THROW(r->read("x", ts[3].data.size(), one), Error);
  EXPECT_THROW(r->read("nope", 0, one), Error);
}

TEST_P(RoundTrip, UncommittedWriterLeavesNothing) {
  TempDir dir;
  const auto& fc = GetParam();
  const Checkpoint in = test::sample_checkpoint(3);
  std::vector<TensorInfo> infos;
  for (const auto& t : in.tensors) infos.push_back(t.info);
  {
    auto w = create_checkpoint(dir / fc.file, in.meta, infos, fc.options);
    w->write(in.tensors[0].info.name, 0, in.tensors[0].data);
  }  // destroyed without commit
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  {
    auto w = create_checkpoint(dir / fc.file, in.meta, infos, fc.options);
    w->write(in.tensors[0].info.name, 0, in.tensors[0].data);
    EXPECT_THROW(w->commit(), Error);  // other tensors never written
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST_P(RoundTrip, ReplacesAnExistingCheckpoint) {
  TempDir dir;
  const auto& fc = GetParam();
  save_checkpoint(dir / fc.file, test::sample_checkpoint(1), fc.options);
  const Checkpoint second = test::sample_checkpoint(2);
  save_checkpoint(dir / fc.file, second, fc.options);
  const Checkpoint out = load_checkpoint(dir / fc.file);
  ASSERT_EQ(out.tensors.size(), second.tensors.size());
  for (std::size_t i = 0; i < out.tensors.size(); ++i) EXPECT_TRUE(out.tensors[i].data == second.tensors[i].data);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST_P(RoundTrip, EmptyCheckpoint) {
  TempDir dir;
  const auto& fc = GetParam();
  Checkpoint in;
  in.meta.step = 0;
  save_checkpoint(dir / fc.file, in, fc.options);
  const Checkpoint out = load_checkpoint(dir / fc.file);
  EXPECT_EQ(out.meta, in.meta);
  EXPECT_TRUE(out.tensors.empty());
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip, ::testing::ValuesIn(format_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(Sharding, PlanRespectsBoundAndOrder) {
  std::vector<TensorInfo> ts;
  for (int i = 0; i < 10; ++i) ts.push_back({"t" + std::to_string(i), DType::f32, {i + 1}});
  ts.push_back({"big", DType::f32, {100}});
  const auto plan = plan_shards(ts, 24);
  std::vector<TensorInfo> flat;
  for (const auto& shard : plan) {
    std::uint64_t bytes = 0;
    for (const auto& t : shard) bytes += t.nbytes();
    EXPECT_TRUE(bytes <= 24 || shard.size() == 1) << "a shard over the bound holds one tensor only";
    flat.insert(flat.end(), shard.begin(), shard.end());
  }
  EXPECT_EQ(flat, ts);
  EXPECT_EQ(plan.back().size(), 1u);
}

TEST(Sharding, WritesShardsAndIndex) {
  TempDir dir;
  const Checkpoint in = test::sample_checkpoint(9);
  save_checkpoint(dir / "set", in, {.shard_bytes = 256});
  int shards = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir / "set")) shards += e.path().extension() == ".safetensors";
  EXPECT_GT(shards, 1);
  EXPECT_TRUE(std::filesystem::exists(dir / "set" / kShardIndexName));
  // The index file and the directory open the same checkpoint.
  const Checkpoint a = load_checkpoint(dir / "set" / kShardIndexName);
  const Checkpoint b = load_checkpoint(dir / "set");
  ASSERT_EQ(a.tensors.size(), in.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_TRUE(a.tensors[i].data == in.tensors[i].data);
    EXPECT_TRUE(b.tensors[i].data == in.tensors[i].data);
  }
  EXPECT_EQ(a.meta, in.meta);
}

TEST(Sharding, DirectoryWithoutIndex) {
  TempDir dir;
  const Checkpoint in = test::sample_checkpoint(4);
  std::filesystem::create_directories(dir / "hf");
  Checkpoint first{in.meta, {in.tensors.begin(), in.tensors.begin() + 5}};
  Checkpoint second{in.meta, {in.tensors.begin() + 5, in.tensors.end()}};
  save_checkpoint(dir / "hf" / "a.safetensors", first);
  save_checkpoint(dir / "hf" / "b.safetensors", second);
  const Checkpoint out = load_checkpoint(dir / "hf");
  ASSERT_EQ(out.tensors.size(), in.tensors.size());
  for (std::size_t i = 0; i < out.tensors.size(); ++i) {
    EXPECT_EQ(out.tensors[i].info, in.tensors[i].info);
    EXPECT_TRUE(out.tensors[i].data == in.tensors[i].data);
  }
}

TEST(Metadata, ReservedExtraKeysRejected) {
  TempDir dir;
  Checkpoint c;
  c.meta.extra["wsm.step"] = "5";
  EXPECT_THROW(save_checkpoint(dir / "x.safetensors", c), Error);
  EXPECT_THROW(save_checkpoint(dir / "x.h5", c), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Metadata, ExtremeValuesRoundTrip) {
  TempDir dir;
  for (const char* file : {"m.h5", "m.safetensors"}) {
    Checkpoint c;
    c.meta.step = INT64_MAX;
    c.meta.tokens = INT64_MIN;
    c.meta.lr = 5e-324;  // smallest subnormal
    c.meta.extra["empty"] = "";
    save_checkpoint(dir / file, c);
    EXPECT_EQ(load_checkpoint(dir / file).meta, c.meta) << file;
  }
}

TEST(TensorInfo, Numel) {
  EXPECT_EQ((TensorInfo{"s", DType::f32, {}}).numel(), 1u);
  EXPECT_EQ((TensorInfo{"z", DType::f32, {3, 0}}).numel(), 0u);
  EXPECT_EQ((TensorInfo{"m", DType::bf16, {3, 4, 5}}).nbytes(), 120u);
  EXPECT_THROW((TensorInfo{"neg", DType::f32, {-1}}).numel(), Error);
  EXPECT_THROW((TensorInfo{"big", DType::f32, {1LL << 40, 1LL << 40}}).numel(), Error);
}

}  // namespace
}  // namespace wsm

namespace wsm {
namespace {

// commit_all: a failure while preparing any output (here a short write in the last) leaves none
// of them in place, and no temporaries once the writers are gone.
TEST(CommitAll, AllOutputsOrNone) {
  test::TempDir dir;
  const Tensor t = test::random_tensor("w", DType::f32, {64}, 1);
  for (bool complete : {false, true}) {
    const std::vector<std::string> names = {"a.safetensors", "b.h5", "c_dir"};
    {
      std::vector<std::unique_ptr<CheckpointWriter>> writers;
      std::vector<CheckpointWriter*> ptrs;
      for (const auto& n : names) {
        writers.push_back(create_checkpoint(dir / n, {}, {t.info}, {.shard_bytes = n == "c_dir" ? 100u : 0u}));
        ptrs.push_back(writers.back().get());
      }
      for (std::size_t i = 0; i < writers.size(); ++i) {
        const std::size_t n = (i + 1 == writers.size() && !complete) ? t.data.size() / 2 : t.data.size();
        writers[i]->write("w", 0, {t.data.data(), n});
      }
      if (complete) {
        commit_all(ptrs);
      } else {
        EXPECT_THROW(commit_all(ptrs), Error);
      }
    }
    for (const auto& n : names) EXPECT_EQ(std::filesystem::exists(dir / n), complete) << n;
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), complete ? 3 : 0);
    if (complete) {
      for (const auto& n : names) EXPECT_TRUE(load_checkpoint(dir / n).tensors.at(0).data == t.data) << n;
    }
  }
}

}  // namespace
}  // namespace wsm
