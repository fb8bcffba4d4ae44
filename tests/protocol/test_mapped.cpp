// CheckpointReader::mapped: where a format hands out its tensor bytes in place, they must be exactly
// the bytes read() copies; where it cannot (compressed or chunked HDF5, byte-swapped or bool types),
// it must say so rather than hand out raw storage.
#include <gtest/gtest.h>

#include <cstdlib>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/mapped_file.h"
#include "tests/protocol/test_util.h"

namespace wsm {
namespace {

using test::TempDir;

std::vector<std::byte> read_all(CheckpointReader& r, const TensorInfo& t) {
  std::vector<std::byte> bytes(t.nbytes());
  r.read(t.name, 0, bytes);
  return bytes;
}

// For each tensor: mapped, and equal to read(); or not mapped.
std::vector<bool> check_mapped_equals_read(CheckpointReader& r) {
  std::vector<bool> mapped;
  for (const auto& t : r.tensors()) {
    const auto view = r.mapped(t.name);
    mapped.push_back(view.has_value());
    if (!view) continue;
    EXPECT_EQ(view->size(), t.nbytes()) << r.path() << " " << t.name;
    const auto bytes = read_all(r, t);
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), view->begin(), view->end())) << r.path() << " " << t.name;
  }
  return mapped;
}

TEST(Mapped, SafetensorsAndShardsMapEveryTensor) {
  TempDir dir;
  const Checkpoint c = test::sample_checkpoint(3);
  save_checkpoint(dir / "one.safetensors", c);
  save_checkpoint(dir / "shards", c, {.shard_bytes = 100});
  for (const char* name : {"one.safetensors", "shards"}) {
    auto r = open_checkpoint(dir / name);
    const auto mapped = check_mapped_equals_read(*r);
    for (std::size_t i = 0; i < mapped.size(); ++i) EXPECT_TRUE(mapped[i]) << name << " " << r->tensors()[i].name;
  }
}

TEST(Mapped, Hdf5ContiguousMapsAndCompressedDoesNot) {
  TempDir dir;
  const Checkpoint c = test::sample_checkpoint(5);
  save_checkpoint(dir / "plain.h5", c);
  save_checkpoint(dir / "deflate.h5", c, {.shard_bytes = 0, .compression = 4, .chunk_bytes = 64});
  {
    auto r = open_checkpoint(dir / "plain.h5");
    const auto mapped = check_mapped_equals_read(*r);
    for (std::size_t i = 0; i < mapped.size(); ++i) {
      const TensorInfo& t = r->tensors()[i];
      // Stored in place: every non-empty tensor but bool (an HDF5 enum) and scalars (HDF5 may keep
      // those in the object header).
      if (t.dtype != DType::boolean && t.numel() > 1) {
        EXPECT_TRUE(mapped[i]) << t.name;
      }
      if (t.dtype == DType::boolean || t.numel() == 0) {
        EXPECT_FALSE(mapped[i]) << t.name;
      }
    }
  }
  {
    auto r = open_checkpoint(dir / "deflate.h5");
    const auto mapped = check_mapped_equals_read(*r);
    for (std::size_t i = 0; i < mapped.size(); ++i)  // scalars cannot be chunked, so stay contiguous
      if (!r->tensors()[i].shape.empty()) {
        EXPECT_FALSE(mapped[i]) << r->tensors()[i].name;
      }
  }
}

// A file written by h5py: contiguous little-endian datasets map; a big-endian one and a gzip one
// do not (their stored bytes are not our bytes), yet all read the same values.
TEST(Mapped, Hdf5WrittenByH5py) {
  const std::string probe = std::string(WSM_PYTHON) + " -c 'import numpy, h5py' >/dev/null 2>&1";
  if (std::system(probe.c_str()) != 0) GTEST_SKIP() << WSM_PYTHON << " lacks numpy/h5py (tools/install-deps.sh installs them)";
  TempDir dir;
  const auto file = dir / "py.h5";
  const std::string script =
      "import numpy as np, h5py\n"
      "x = np.arange(700, dtype=np.float32).reshape(100, 7) / 7\n"
      "with h5py.File('" + file.string() + "', 'w') as f:\n"
      "    f['le'] = x\n"
      "    f['half'] = x.astype(np.float16)\n"
      "    f.create_dataset('be', data=x.astype('>f4'))\n"
      "    f.create_dataset('gz', data=x, chunks=(10, 7), compression='gzip')\n";
  const auto py = dir / "write.py";
  {
    std::FILE* f = std::fopen(py.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(script.c_str(), f);
    std::fclose(f);
  }
  ASSERT_EQ(std::system((std::string(WSM_PYTHON) + " " + py.string()).c_str()), 0);
  auto r = open_checkpoint(file);
  check_mapped_equals_read(*r);
  EXPECT_TRUE(r->mapped("le").has_value());
  EXPECT_TRUE(r->mapped("half").has_value());
  EXPECT_FALSE(r->mapped("be").has_value());
  EXPECT_FALSE(r->mapped("gz").has_value());
  EXPECT_EQ(read_all(*r, r->info("be")), read_all(*r, r->info("le")));
  EXPECT_EQ(read_all(*r, r->info("gz")), read_all(*r, r->info("le")));
}

TEST(Mapped, PageHintsKeepTheDataValid) {
  TempDir dir;
  Checkpoint c;
  c.tensors.push_back(test::random_tensor("big", DType::f32, {1 << 18}, 9));  // 1 MiB: several whole pages
  save_checkpoint(dir / "big.safetensors", c);
  auto r = open_checkpoint(dir / "big.safetensors");
  const auto view = *r->mapped("big");
  prefetch_mapped(view.subspan(1000, 300000));
  release_mapped(view.subspan(1000, 300000));  // drops pages from RSS; the bytes must read the same
  release_mapped({});
  EXPECT_TRUE(std::equal(view.begin(), view.end(), c.tensors[0].data.begin()));
}

}  // namespace
}  // namespace wsm
