// Slices, part layouts and multi-part checkpoints (wsm/formats/tensor_slice.h, part_layout.h,
// multipart_checkpoint.h): part files written here by hand from whole tensors; the reader's whole
// tensors and byte ranges are compared with the tensors they were cut from.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <cstring>
#include <random>

#include "wsm/formats/multipart_checkpoint.h"
#include "wsm/formats/part_layout.h"
#include "wsm/formats/tensor_slice.h"
#include "test_util.h"

namespace wsm {
namespace {

using Shape = std::vector<std::int64_t>;

TensorSlice block(Shape global, Shape offsets, Shape lengths) { return {std::move(global), std::move(offsets), std::move(lengths)}; }

TEST(TensorSlice, EntryNamesAndSingleSliceProblems) {
  EXPECT_EQ(slice_entry_name("w", block({7, 5}, {1, 0}, {3, 5})), "w[1:4,0:5]");
  EXPECT_EQ(slice_entry_name("s", block({}, {}, {})), "s[]");
  EXPECT_FALSE(slice_problem(block({7, 5}, {4, 0}, {3, 5})));
  EXPECT_TRUE(slice_problem(block({7, 5}, {5, 0}, {3, 5})));   // past the end
  EXPECT_TRUE(slice_problem(block({7, 5}, {0}, {3, 5})));      // dims disagree
  EXPECT_TRUE(slice_problem(block({7, 5}, {-1, 0}, {3, 5})));  // negative
  TensorSlice rep = block({4}, {0}, {2});
  rep.replicated = true;
  EXPECT_TRUE(slice_problem(rep));  // a replicated copy is the whole tensor
}

TEST(TensorSlice, TilingFindsOverlapsAndGaps) {
  std::vector<TensorSlice> exact = {block({4, 6}, {0, 0}, {4, 2}), block({4, 6}, {0, 2}, {1, 4}), block({4, 6}, {1, 2}, {3, 4})};
  EXPECT_FALSE(tiling_problem(exact, true));
  auto gap = exact;
  gap.pop_back();
  EXPECT_NE(tiling_problem(gap, true)->find("gap"), std::string::npos);
  EXPECT_FALSE(tiling_problem(gap, false));  // one node's share: gaps are for the reader
  auto over = exact;
  over.push_back(block({4, 6}, {3, 5}, {1, 1}));
  EXPECT_NE(tiling_problem(over, false)->find("overlap"), std::string::npos);
  // Many row blocks (the sweep's usual case) and a late overlap among them.
  std::vector<TensorSlice> rows;
  for (int r = 0; r < 5000; ++r) rows.push_back(block({5000, 2}, {r, 0}, {1, 2}));
  EXPECT_FALSE(tiling_problem(rows, true));
  rows.push_back(block({5000, 2}, {4321, 1}, {1, 1}));
  EXPECT_NE(tiling_problem(rows, true)->find("[4321:4322,0:2] and [4321:4322,1:2] overlap"), std::string::npos);
  auto shapes = exact;
  shapes[1].global_shape = {4, 7};
  EXPECT_NE(tiling_problem(shapes, true)->find("global shape"), std::string::npos);
}

// Issue 23 item 1: blocks split along dimension 1 (or any other) cost n log n, as along dimension
// 0. 65,536 one-element column blocks took minutes (every block stayed "open" in the dim-0 sweep);
// the reference is the layout itself: columns 0..n-1 exactly once, then one duplicate.
TEST(TensorSlice, TilingIsFastAlongEveryDimension) {
  constexpr int n = 1 << 16;
  for (std::size_t dim : {0u, 1u, 2u}) {
    std::vector<TensorSlice> cols;
    for (int c = 0; c < n; ++c) {
      Shape global{2, 3, 2}, offsets{0, 0, 0}, lengths{2, 3, 2};
      global[dim] = n;
      offsets[dim] = c;
      lengths[dim] = 1;
      cols.push_back(block(global, offsets, lengths));
    }
    std::reverse(cols.begin(), cols.end());  // order of arrival does not matter
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_FALSE(tiling_problem(cols, true)) << dim;
    auto twice = cols[n / 3];
    cols.push_back(twice);
    const auto problem = tiling_problem(cols, true);
    ASSERT_TRUE(problem) << dim;
    EXPECT_NE(problem->find(slice_entry_name("", twice) + " and " + slice_entry_name("", twice) + " overlap"), std::string::npos)
        << *problem;
    cols.pop_back();
    cols.pop_back();
    EXPECT_NE(tiling_problem(cols, true)->find("gap"), std::string::npos) << dim;
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0) << dim;
  }
}

// Grids of blocks over two dimensions, and a pinwheel (no cut separates its five blocks, so the
// pairwise sweep checks it), each against a cell-by-cell count of the covered elements.
TEST(TensorSlice, TilingMatchesACellCountOnGridsAndPinwheels) {
  auto by_cells = [](const std::vector<TensorSlice>& blocks, Shape g) {
    std::vector<int> hits(static_cast<std::size_t>(g[0] * g[1]));
    for (const auto& b : blocks)
      for (auto r = b.offsets[0]; r < b.offsets[0] + b.lengths[0]; ++r)
        for (auto c = b.offsets[1]; c < b.offsets[1] + b.lengths[1]; ++c) ++hits[static_cast<std::size_t>(r * g[1] + c)];
    bool over = false, gap = false;
    for (int h : hits) over |= h > 1, gap |= h == 0;
    return std::pair{over, gap};
  };
  std::mt19937 rng(23);
  for (int trial = 0; trial < 300; ++trial) {
    const Shape g{8, 9};
    std::vector<TensorSlice> blocks;
    for (std::int64_t r = 0; r < 8; r += 2)
      for (std::int64_t c = 0; c < 9; c += 3) blocks.push_back(block(g, {r, c}, {2, 3}));
    // Nudge one block (overlap or gap), or none.
    if (trial % 3) {
      auto& b = blocks[rng() % blocks.size()];
      b.offsets = {static_cast<std::int64_t>(rng() % 7), static_cast<std::int64_t>(rng() % 7)};
      b.lengths = {1 + static_cast<std::int64_t>(rng() % (8 - b.offsets[0])), 1 + static_cast<std::int64_t>(rng() % (9 - b.offsets[1]))};
    }
    std::shuffle(blocks.begin(), blocks.end(), rng);
    const auto [over, gap] = by_cells(blocks, g);
    const auto problem = tiling_problem(blocks, true);
    EXPECT_EQ(problem.has_value(), over || gap) << trial;
    if (problem) EXPECT_NE(problem->find(over ? "overlap" : "gap"), std::string::npos) << *problem;
  }
  // Pinwheel: four 2x1 arms around a centre cell of a 3x3 tensor.
  const Shape g{3, 3};
  std::vector<TensorSlice> pinwheel = {block(g, {0, 0}, {1, 2}), block(g, {0, 2}, {2, 1}), block(g, {2, 1}, {1, 2}),
                                       block(g, {1, 0}, {2, 1}), block(g, {1, 1}, {1, 1})};
  EXPECT_FALSE(tiling_problem(pinwheel, true));
  pinwheel.back() = block(g, {1, 1}, {2, 1});
  EXPECT_NE(tiling_problem(pinwheel, true)->find("overlap"), std::string::npos);
}

// Issue 23 item 15: a refused slice's end is printed as the number it is, not an int64 wrap.
TEST(TensorSlice, ProblemTextsDoNotOverflow) {
  const std::int64_t big = std::numeric_limits<std::int64_t>::max() - 1;
  const auto problem = slice_problem(block({5}, {big}, {10}));
  ASSERT_TRUE(problem);
  EXPECT_NE(problem->find("[9223372036854775806:9223372036854775816]"), std::string::npos) << *problem;
  const auto negative = slice_problem(block({5}, {-3}, {2}));
  ASSERT_TRUE(negative);
  EXPECT_NE(negative->find("[-3:-3+2]"), std::string::npos) << *negative;
}

TEST(PartLayout, JsonRoundTripAndRefusals) {
  PartLayout l{"run", 4, 2, {2, 3}, {}};
  auto s = block({7, 5}, {4, 0}, {3, 5});
  l.entries.push_back({slice_entry_name("w", s), "w", s});
  EXPECT_EQ(layout_from_json(layout_to_json(l), "x"), l);
  EXPECT_EQ(part_file_name(l), "part-rank00002.h5");
  auto bad = l;
  bad.entries[0].entry = "w[0:1,0:5]";  // does not name its slice
  EXPECT_THROW(layout_from_json(layout_to_json(bad), "x"), Error);
  bad = l;
  bad.ranks = {3, 2};
  EXPECT_THROW(layout_from_json(layout_to_json(bad), "x"), Error);
}

// Whole tensors, and parts cut from them.
struct Whole {
  std::string name;
  Shape shape;
  std::vector<float> values;
};

Whole whole(const std::string& name, Shape shape, std::uint32_t seed) {
  Whole w{name, shape, std::vector<float>(element_count(shape))};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto& v : w.values) v = u(rng);
  return w;
}

// The block's elements in C order, by visiting every global index (independent of the reader).
std::vector<float> cut(const Whole& w, const TensorSlice& s) {
  std::vector<float> out;
  const auto n = element_count(w.shape);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t rest = i;
    bool inside = true;
    for (std::size_t d = w.shape.size(); d-- > 0;) {
      const auto c = static_cast<std::int64_t>(rest % static_cast<std::uint64_t>(w.shape[d]));
      rest /= static_cast<std::uint64_t>(w.shape[d]);
      inside = inside && c >= s.offsets[d] && c < s.offsets[d] + s.lengths[d];
    }
    if (inside) out.push_back(w.values[i]);
  }
  return out;
}

struct PartSpec {
  std::vector<int> ranks;
  std::vector<std::pair<const Whole*, TensorSlice>> blocks;
};

void write_part(const std::filesystem::path& dir, int world, const PartSpec& p,
                std::map<std::string, std::string> extra = {{"wsm.provenance", R"({"sources":[1,2]})"}}) {
  PartLayout l{"run", world, static_cast<int>(p.ranks.size()), p.ranks, {}};
  std::vector<TensorInfo> infos;
  for (const auto& [w, s] : p.blocks) {
    l.entries.push_back({slice_entry_name(w->name, s), w->name, s});
    infos.push_back({l.entries.back().entry, DType::f32, s.lengths});
  }
  CheckpointMeta meta;
  meta.step = 200;
  meta.run_id = "run";
  meta.extra = std::move(extra);
  meta.extra[kPartLayoutKey] = layout_to_json(l);
  std::filesystem::create_directories(dir);
  auto writer = create_checkpoint(dir / part_file_name(l), meta, infos);
  for (std::size_t i = 0; i < p.blocks.size(); ++i) {
    auto v = cut(*p.blocks[i].first, p.blocks[i].second);
    writer->write(infos[i].name, 0, std::as_bytes(std::span(v)));
  }
  writer->commit();
}

struct Fixture {
  Whole rows = whole("rows", {7, 5}, 1), cols = whole("cols", {3, 10}, 2), cube = whole("cube", {4, 3, 6}, 3),
        bias = whole("bias", {5}, 4), scalar = whole("scalar", {}, 5);
  TensorSlice rep() const {
    auto s = block({5}, {0}, {5});
    s.replicated = true;
    return s;
  }
  PartSpec node0() const {
    return {{0, 1},
            {{&rows, block({7, 5}, {0, 0}, {1, 5})}, {&rows, block({7, 5}, {1, 0}, {3, 5})},
             {&cols, block({3, 10}, {0, 0}, {3, 3})}, {&cols, block({3, 10}, {0, 3}, {3, 1})},
             {&cube, block({4, 3, 6}, {0, 0, 0}, {4, 3, 2})}, {&cube, block({4, 3, 6}, {0, 0, 2}, {2, 3, 4})},
             {&bias, rep()}, {&scalar, block({}, {}, {})}}};
  }
  PartSpec node1() const {
    return {{2, 3},
            {{&rows, block({7, 5}, {4, 0}, {3, 5})}, {&cols, block({3, 10}, {0, 4}, {3, 6})},
             {&cube, block({4, 3, 6}, {2, 0, 2}, {2, 3, 4})}, {&bias, rep()}}};
  }
};

void expect_whole(CheckpointReader& r, const Whole& w) {
  std::vector<float> got(w.values.size());
  r.read(w.name, 0, std::as_writable_bytes(std::span(got)));
  EXPECT_EQ(std::memcmp(got.data(), w.values.data(), got.size() * 4), 0) << w.name;
}

TEST(Multipart, OpensAsWholeTensorsAndReadsAnyByteRange) {
  test::TempDir tmp;
  Fixture f;
  const auto dir = tmp / "step_200";
  write_part(dir, 4, f.node0());
  write_part(dir, 4, f.node1());
  ASSERT_TRUE(is_multipart_dir(dir));
  auto r = open_checkpoint(dir);
  EXPECT_EQ(r->format(), "multi-part");
  EXPECT_EQ(r->meta().step, 200);
  EXPECT_FALSE(r->meta().extra.contains(kPartLayoutKey));
  ASSERT_EQ(r->tensors().size(), 5u);
  EXPECT_EQ(r->info("cube").shape, (Shape{4, 3, 6}));
  for (const auto* w : {&f.rows, &f.cols, &f.cube, &f.bias, &f.scalar}) expect_whole(*r, *w);
  // Ranges that start and end inside elements and rows.
  const auto* src = reinterpret_cast<const std::byte*>(f.cube.values.data());
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    const std::uint64_t total = f.cube.values.size() * 4;
    const auto a = rng() % total, b = rng() % total;
    std::vector<std::byte> got(std::max(a, b) - std::min(a, b));
    r->read("cube", std::min(a, b), got);
    // std::equal, not memcmp: an empty range has a null data() (UBSan).
    ASSERT_TRUE(std::equal(got.begin(), got.end(), src + std::min(a, b))) << std::min(a, b) << "+" << got.size();
  }
  // load_checkpoint (every command's whole-checkpoint path) sees the same.
  auto c = load_checkpoint(dir);
  EXPECT_EQ(c.tensors.size(), 5u);
}

TEST(Multipart, RefusesAnIncompleteSet) {
  test::TempDir tmp;
  Fixture f;
  write_part(tmp / "s", 4, f.node0());
  try {
    open_checkpoint(tmp / "s");
    FAIL() << "opened without ranks 2,3";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no part holds ranks 2,3 of 4"), std::string::npos) << e.what();
  }
}

TEST(Multipart, RefusesGapsOverlapsAndDisagreeingParts) {
  Fixture f;
  auto expect_refused = [&](PartSpec a, PartSpec b, const std::string& why, std::map<std::string, std::string> extra_b = {
                                                                                 {"wsm.provenance", R"({"sources":[1,2]})"}}) {
    test::TempDir tmp;
    write_part(tmp / "s", 4, a);
    write_part(tmp / "s", 4, b, extra_b);
    try {
      open_checkpoint(tmp / "s");
      ADD_FAILURE() << "opened; expected: " << why;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  };
  auto gap = f.node1();
  gap.blocks.erase(gap.blocks.begin());  // rows 4..6 missing
  expect_refused(f.node0(), gap, "(a gap)");
  auto over = f.node1();
  over.blocks[0].second = block({7, 5}, {3, 0}, {4, 5});  // row 3 twice
  expect_refused(f.node0(), over, "overlap");
  expect_refused(f.node0(), f.node1(), "disagree on wsm.provenance", {{"wsm.provenance", R"({"sources":[1,3]})"}});
  Whole other_bias = f.bias;
  other_bias.values[2] += 1;
  auto differs = f.node1();
  differs.blocks[3].first = &other_bias;
  expect_refused(f.node0(), differs, "replicated copies differ");
  auto twice = f.node1();
  twice.ranks = {1, 2, 3};  // rank 1 in both parts
  expect_refused(f.node0(), twice, "rank 1 is in two parts");
}

}  // namespace
}  // namespace wsm
