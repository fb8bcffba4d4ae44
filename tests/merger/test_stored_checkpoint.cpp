// How the daemon holds a received checkpoint: tensors as the pieces their chunks arrived in, large
// frames kept without a copy, reads across piece boundaries, and the HDF5 copy written from pieces
// (boundaries inside an element included). The reference is the byte vector the chunks were cut from.
#include <gtest/gtest.h>

#include "merger/daemon/checkpoint_assembler.h"
#include "merger/daemon/stored_checkpoint.h"
#include "serve_test_util.h"

namespace wsm::merger {
namespace {

std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// Pieces of the given sizes cut from `whole`, each a copy of its own.
TensorBytes cut(const std::vector<std::byte>& whole, const std::vector<std::size_t>& sizes) {
  TensorBytes t;
  std::size_t at = 0;
  for (auto n : sizes) {
    t.append_copy({whole.data() + at, n});
    at += n;
  }
  return t;
}

TEST(TensorBytes, ReadsAnyRangeAcrossPieces) {
  const std::vector<std::size_t> sizes{1, 7, 1000, 3, 4096, 1};
  std::size_t total = 0;
  for (auto n : sizes) total += n;
  const auto whole = random_bytes(total, 1);
  const auto t = cut(whole, sizes);
  ASSERT_EQ(t.size(), total);
  // Every range starting and ending at or next to a piece boundary, plus the whole.
  std::vector<std::size_t> points{0, total};
  for (std::size_t at = 0, i = 0; i < sizes.size(); at += sizes[i++])
    for (std::size_t p : {at, at + 1, at + sizes[i] - 1}) points.push_back(std::min(p, total));
  for (auto from : points)
    for (auto to : points) {
      if (to < from) continue;
      std::vector<std::byte> got(to - from, std::byte{0xEE});
      t.read(from, got);
      ASSERT_TRUE(std::equal(got.begin(), got.end(), whole.begin() + static_cast<std::ptrdiff_t>(from)))
          << "range [" << from << ", " << to << ")";
    }
  std::vector<std::byte> one(1);
  EXPECT_THROW(t.read(total, one), Error);
  std::vector<std::byte> all(total + 1);
  EXPECT_THROW(t.read(0, all), Error);
}

v1::TensorChunk chunk_of(const std::string& name, std::uint64_t offset, std::span<const std::byte> bytes) {
  v1::TensorChunk c;
  c.set_step(5);
  c.set_name(name);
  c.set_offset(offset);
  c.set_length(bytes.size());
  c.set_checksum(wire::checksum(bytes));
  return c;
}

TEST(CheckpointAssembler, KeepsLargeFramesWithoutCopyAndCopiesSmallOnes) {
  const std::size_t big = CheckpointAssembler::kKeepFrameBytes;
  // Tensor "a" (f32) in four chunks, two of them ending inside an element: the HDF5 copy then
  // writes those elements in two parts.
  const std::vector<std::size_t> chunks{big + 1, big + 3, 101, big / 2 - 1};
  std::size_t total = 0;
  for (auto n : chunks) total += n;
  ASSERT_EQ(total % 4, 0u);
  const auto a = random_bytes(total, 2), b = random_bytes(12, 3);
  auto manifest = std::make_shared<const Manifest>(Manifest{{"a", DType::f32, {static_cast<std::int64_t>(total / 4)}},
                                                           {"b", DType::f32, {3}}});
  v1::CheckpointBegin begin;
  begin.set_step(5);
  CheckpointAssembler asm_("run", manifest, begin);
  wire::ChecksumChain whole;
  std::vector<const void*> frame_data;
  std::size_t at = 0;
  for (auto n : chunks) {
    const std::span<const std::byte> part(a.data() + at, n);
    zmq::message_t frame(part.data(), part.size());
    frame_data.push_back(frame.data());
    const auto c = chunk_of("a", at, part);
    whole.add(c.checksum());
    asm_.add(c, std::move(frame));
    at += n;
  }
  const auto cb = chunk_of("b", 0, b);
  whole.add(cb.checksum());
  asm_.add(cb, zmq::message_t(b.data(), b.size()));
  v1::CheckpointEnd end;
  end.set_step(5);
  end.set_total_bytes(total + b.size());
  end.set_checksum(whole.digest());
  const auto c = asm_.finish(end);

  ASSERT_EQ(c->data[0].pieces.size(), chunks.size());
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const bool kept = c->data[0].pieces[i].bytes.data() == frame_data[i];
    EXPECT_EQ(kept, chunks[i] >= big) << "chunk " << i << " of " << chunks[i] << " bytes";
  }
  // Read back through the window's reader, and through the HDF5 copy written from the pieces.
  for (const auto& reader : {open_stored(c), [&] {
                               const auto path = test::temp_dir("stored") / "step_5.h5";
                               persist(*c, path);
                               return open_checkpoint(path);
                             }()}) {
    std::vector<std::byte> got_a(total), got_b(b.size());
    reader->read("a", 0, got_a);
    reader->read("b", 0, got_b);
    EXPECT_EQ(got_a, a) << reader->path();
    EXPECT_EQ(got_b, b) << reader->path();
  }
}

TEST(CheckpointAssembler, RejectsAFrameThatDoesNotMatchItsChecksum) {
  const auto a = random_bytes(CheckpointAssembler::kKeepFrameBytes, 4);
  auto manifest = std::make_shared<const Manifest>(Manifest{{"a", DType::u8, {static_cast<std::int64_t>(a.size())}}});
  v1::CheckpointBegin begin;
  begin.set_step(5);
  CheckpointAssembler asm_("run", manifest, begin);
  const auto c = chunk_of("a", 0, a);
  auto corrupt = a;
  corrupt[a.size() / 2] ^= std::byte{1};
  try {
    asm_.add(c, zmq::message_t(corrupt.data(), corrupt.size()));
    FAIL() << "a corrupt chunk was accepted";
  } catch (const wire::ProtocolError& e) {
    EXPECT_EQ(e.code(), v1::CHECKSUM_MISMATCH);
    EXPECT_NE(std::string(e.what()).find("tensor 'a'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace wsm::merger
