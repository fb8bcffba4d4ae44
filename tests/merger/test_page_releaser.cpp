// PageReleaser (merger/engine/page_releaser.h): finished mapped pages leave the process's resident
// set once a batch is pending, not before; ranges given in any order and from several threads are
// all released; and the bytes read the same afterwards. Residency is read from /proc/self/statm.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "merger/engine/page_releaser.h"
#include "tests/protocol/test_util.h"
#include "wsm/formats/checkpoint.h"

namespace wsm::merger {
namespace {

// Resident bytes of this process backed by files or shared memory (statm's third field): here
// mostly the mapped checkpoint's pages.
std::uint64_t resident_shared_bytes() {
  std::ifstream f("/proc/self/statm");
  std::uint64_t size = 0, resident = 0, shared = 0;
  f >> size >> resident >> shared;
  return shared * std::uint64_t(::sysconf(_SC_PAGESIZE));
}

// Reads a byte of every page of `bytes` (through a volatile pointer: the reads are the point).
void touch(std::span<const std::byte> bytes) {
  const volatile std::byte* p = bytes.data();
  for (std::size_t i = 0; i < bytes.size(); i += 4096) static_cast<void>(p[i]);
}

TEST(PageReleaser, ReleasesInBatchesWhateverTheOrderAndTheDataStays) {
  test::TempDir dir;
  Checkpoint c;
  c.tensors.push_back(test::random_tensor("big", DType::f32, {16u << 20}, 5));  // 64 MiB
  save_checkpoint(dir / "big.safetensors", c);
  auto r = open_checkpoint(dir / "big.safetensors");
  const auto view = *r->mapped("big");
  constexpr std::size_t kChunk = 300'001;  // not a page multiple: chunk edges fall inside pages
  std::vector<std::span<const std::byte>> chunks;
  for (std::size_t at = 0; at < view.size(); at += kChunk)
    chunks.push_back(view.subspan(at, std::min(kChunk, view.size() - at)));
  std::shuffle(chunks.begin(), chunks.end(), std::mt19937(1));

  touch(view);
  const std::uint64_t before = resident_shared_bytes();
  ASSERT_GE(before, 60u << 20) << "the mapped file must be resident after touching it";
  {
    PageReleaser releaser(view.size() + 1);  // a batch larger than the file: nothing released early
    std::vector<std::jthread> threads;
    for (std::size_t t = 0; t < 2; ++t)
      threads.emplace_back([&, t] {
        for (std::size_t i = t; i < chunks.size(); i += 2) releaser.add(chunks[i]);
      });
    threads.clear();
    EXPECT_GE(resident_shared_bytes(), before - (4u << 20)) << "released before the batch was full";
    releaser.flush();
    // All of it goes but pages at the file's edges (and some noise of the test process's own).
    EXPECT_LE(resident_shared_bytes(), before - view.size() + (256u << 10));
  }
  EXPECT_TRUE(std::equal(view.begin(), view.end(), c.tensors[0].data.begin()));

  // A batch smaller than the file releases along the way, and the destructor releases the rest.
  touch(view);
  const std::uint64_t full = resident_shared_bytes();
  const std::size_t half = chunks.size() / 2;
  std::uint64_t added = 0;
  const std::uint64_t edges = 2 * 4096 * half;  // partial pages at the edges of scattered chunks stay
  {
    PageReleaser releaser(8u << 20);
    for (std::size_t i = 0; i < half; ++i) {
      releaser.add(chunks[i]);
      added += chunks[i].size();
    }
    EXPECT_LE(resident_shared_bytes() + added, full + (8u << 20) + edges) << "at most one batch may be pending";
  }
  EXPECT_LE(resident_shared_bytes() + added, full + edges) << "the destructor releases what is pending";
  EXPECT_TRUE(std::equal(view.begin(), view.end(), c.tensors[0].data.begin()));
}

}  // namespace
}  // namespace wsm::merger
