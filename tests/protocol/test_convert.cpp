// Streaming conversion: exact between formats, bounded reads, float casts against a
// double-precision nearest-value reference, integers never cast, NaN/Inf reported.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/tensor_convert.h"
#include "tests/protocol/test_util.h"

namespace wsm {
namespace {

using test::TempDir;

// Forwards to a real reader and records the longest read it was asked for.
class CountingReader final : public CheckpointReader {
 public:
  explicit CountingReader(std::unique_ptr<CheckpointReader> r) : r_(std::move(r)) {}
  const std::vector<TensorInfo>& tensors() const override { return r_->tensors(); }
  const CheckpointMeta& meta() const override { return r_->meta(); }
  std::string format() const override { return r_->format(); }
  const std::filesystem::path& path() const override { return r_->path(); }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override {
    max_read = std::max<std::uint64_t>(max_read, dst.size());
    r_->read(name, offset, dst);
  }
  std::uint64_t max_read = 0;

 private:
  std::unique_ptr<CheckpointReader> r_;
};

void expect_same(const Checkpoint& a, const Checkpoint& b) {
  EXPECT_EQ(a.meta, b.meta);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].info, b.tensors[i].info);
    EXPECT_TRUE(a.tensors[i].data == b.tensors[i].data) << a.tensors[i].info.name;
  }
}

TEST(Convert, ChainThroughEveryFormatIsExactWithSmallChunks) {
  TempDir dir;
  Checkpoint in = test::sample_checkpoint(31);
  in.tensors.push_back(test::random_tensor("big", DType::f32, {64, 33}, 8));  // 8448 bytes >> chunk bound
  save_checkpoint(dir / "a.h5", in);
  const std::vector<std::string> chain = {"a.h5", "b.safetensors", "c_shards", "d.hdf5", "e.safetensors"};
  for (std::size_t i = 0; i + 1 < chain.size(); ++i) {
    ConvertOptions o;
    o.chunk_bytes = 40;  // far smaller than "big": converted in pieces
    if (chain[i + 1] == "c_shards") o.write.shard_bytes = 1000;
    if (chain[i + 1] == "d.hdf5") o.write = {.compression = 3, .chunk_bytes = 128};
    CountingReader r(open_checkpoint(dir / chain[i]));
    const ConvertReport rep = convert_checkpoint(r, dir / chain[i + 1], o);
    EXPECT_LE(r.max_read, 40u) << chain[i];
    EXPECT_EQ(rep.tensors, in.tensors.size());
    expect_same(load_checkpoint(dir / chain[i + 1]), in);
  }
}

// Independent reference: decode every finite value of a 16-bit float format with ldexp, then pick
// the nearest one in double precision, ties to the even bit pattern; beyond the largest finite
// value plus half an ulp, infinity.
struct Nearest16 {
  std::vector<std::pair<double, std::uint16_t>> values;  // sorted, non-negative finite
  double overflow_at;

  Nearest16(int exp_bits, int man_bits) {
    const int bias = (1 << (exp_bits - 1)) - 1;
    for (std::uint32_t e = 0; e < (1u << exp_bits) - 1; ++e)
      for (std::uint32_t m = 0; m < (1u << man_bits); ++m) {
        const double v = e == 0 ? std::ldexp(double(m), 1 - bias - man_bits)
                                : std::ldexp(double((1u << man_bits) + m), int(e) - bias - man_bits);
        values.emplace_back(v, std::uint16_t((e << man_bits) | m));
      }
    const double max = values.back().first;
    overflow_at = max + std::ldexp(1.0, (1 << exp_bits) - 2 - bias - man_bits - 1);  // max + half ulp
  }
  std::uint16_t operator()(double x, int exp_bits, int man_bits) const {
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const std::uint16_t inf = std::uint16_t(((1u << exp_bits) - 1) << man_bits);
    const double a = std::fabs(x);
    if (std::isinf(a) || a >= overflow_at) return sign | inf;
    auto hi = std::lower_bound(values.begin(), values.end(), std::make_pair(a, std::uint16_t(0)));
    if (hi == values.begin()) return sign | hi->second;
    auto lo = std::prev(hi);
    if (hi == values.end()) return sign | lo->second;
    const double dl = a - lo->first, dh = hi->first - a;
    if (dl < dh) return sign | lo->second;
    if (dh < dl) return sign | hi->second;
    return sign | ((lo->second & 1) ? hi->second : lo->second);
  }
};

TEST(Cast, F32ToHalfAndBf16MatchNearestReference) {
  const Nearest16 half(5, 10), bf(8, 7);
  std::mt19937 rng(3);
  std::vector<float> xs;
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 20000; ++i) {
    float f;
    const std::uint32_t b = bits(rng);
    std::memcpy(&f, &b, 4);
    if (std::isfinite(f)) xs.push_back(f);
  }
  std::normal_distribution<float> nd(0, 1);
  for (int i = 0; i < 20000; ++i) xs.push_back(nd(rng) * std::ldexp(1.0f, int(rng() % 40) - 20));
  for (float v : {65504.0f, 65519.99f, 65520.0f, 6.0e-8f, 2.98e-8f, 5.96e-8f, 0.0f, -0.0f}) xs.push_back(v);
  const auto* src = reinterpret_cast<const std::byte*>(xs.data());
  std::vector<std::uint16_t> h(xs.size()), b(xs.size());
  cast_elements(DType::f32, {src, xs.size() * 4}, DType::f16, std::as_writable_bytes(std::span(h)));
  cast_elements(DType::f32, {src, xs.size() * 4}, DType::bf16, std::as_writable_bytes(std::span(b)));
  int bad_h = 0, bad_b = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    bad_h += h[i] != half(xs[i], 5, 10);
    bad_b += b[i] != bf(xs[i], 8, 7);
  }
  EXPECT_EQ(bad_h, 0);
  EXPECT_EQ(bad_b, 0);
}

TEST(Cast, WideningIsExactAndOverflowCounted) {
  const std::vector<double> xs = {1.0, -2.5, 1e300, 3.0e38, 1e-40, -1e6};
  std::vector<float> f(xs.size());
  const auto of = cast_elements(DType::f64, std::as_bytes(std::span(xs)), DType::f32, std::as_writable_bytes(std::span(f)));
  EXPECT_EQ(of, 1u);  // 1e300
  EXPECT_TRUE(std::isinf(f[2]));
  for (std::size_t i : {0u, 1u, 3u, 5u}) EXPECT_EQ(f[i], static_cast<float>(xs[i]));
  std::vector<std::uint16_t> h(f.size());
  const auto oh = cast_elements(DType::f32, std::as_bytes(std::span(f)), DType::f16, std::as_writable_bytes(std::span(h)));
  EXPECT_EQ(oh, 2u);  // 3e38 and -1e6 overflow half (1e300 was already inf: not counted)
  std::vector<double> back(h.size());
  cast_elements(DType::f16, std::as_bytes(std::span(h)), DType::f64, std::as_writable_bytes(std::span(back)));
  EXPECT_EQ(back[0], 1.0);
  EXPECT_EQ(back[1], -2.5);
  EXPECT_THROW(cast_elements(DType::i32, std::as_bytes(std::span(f)), DType::f32, std::as_writable_bytes(std::span(f))),
               Error);
}

TEST(Scan, CountsNanAndInfWithPositions) {
  std::vector<float> v(100, 1.0f);
  v[7] = std::nanf("");
  v[50] = -INFINITY;
  v[99] = INFINITY;
  const FiniteScan s = scan_nonfinite(DType::f32, std::as_bytes(std::span(v)), 1000);
  EXPECT_EQ(s.nan, 1u);
  EXPECT_EQ(s.inf, 2u);
  EXPECT_EQ(s.first_bad, 1007u);
  const std::vector<std::uint16_t> h = {0x3c00, 0x7c00, 0xfe00, 0x0001};  // 1, inf, nan, subnormal
  const FiniteScan sh = scan_nonfinite(DType::f16, std::as_bytes(std::span(h)));
  EXPECT_EQ(sh.nan, 1u);
  EXPECT_EQ(sh.inf, 1u);
  const std::vector<std::uint16_t> b = {0x3f80, 0x7f80, 0x7fc1};  // 1, inf, nan
  const FiniteScan sb = scan_nonfinite(DType::bf16, std::as_bytes(std::span(b)));
  EXPECT_EQ(sb.nan, 1u);
  EXPECT_EQ(sb.inf, 1u);
  const std::vector<std::int32_t> ints = {-1, 0x7f800000};
  EXPECT_TRUE(scan_nonfinite(DType::i32, std::as_bytes(std::span(ints))).clean());
}

// The scan tests whole blocks at once and counts only blocks that hold a NaN/Inf: random bit
// values over many blocks (NaN/Inf of both signs among finite values of every sign and scale)
// must count exactly what a per-element std::isfinite loop counts, at the same first position.
TEST(Scan, BlockedScanMatchesAnElementLoopOnRandomBits) {
  std::mt19937_64 rng(7);
  struct Case {
    DType t;
    std::size_t size;
  };
  for (const Case c : {Case{DType::bf16, 2}, Case{DType::f16, 2}, Case{DType::f32, 4}, Case{DType::f64, 8}}) {
    for (const std::size_t n : {std::size_t(1), std::size_t(4095), std::size_t(4096), std::size_t(50'001)}) {
      // Mostly finite values; about one in 500 is NaN or Inf.
      std::vector<std::byte> data(n * c.size);
      std::vector<double> ref(n);
      for (std::size_t i = 0; i < n; ++i) {
        const double v = std::ldexp(double(rng() % 2000) - 1000.0, int(rng() % 20) - 10);
        const auto roll = rng() % 2000;
        const double x = roll == 0   ? std::nan("")
                         : roll == 1 ? -INFINITY
                         : roll == 2 ? INFINITY
                         : roll == 3 ? -std::nan("")
                                     : v;
        std::vector<double> one{x};
        cast_elements(DType::f64, std::as_bytes(std::span(one)), c.t, std::span(data).subspan(i * c.size, c.size));
        std::vector<double> back(1);
        cast_elements(c.t, std::span(data).subspan(i * c.size, c.size), DType::f64,
                      std::as_writable_bytes(std::span(back)));
        ref[i] = back[0];
      }
      FiniteScan want;
      for (std::size_t i = 0; i < n; ++i) {
        if (std::isfinite(ref[i])) continue;
        ++(std::isnan(ref[i]) ? want.nan : want.inf);
        if (!want.first_bad) want.first_bad = 5 + i;
      }
      const FiniteScan got = scan_nonfinite(c.t, data, 5);
      EXPECT_EQ(got.nan, want.nan) << dtype_name(c.t) << " n=" << n;
      EXPECT_EQ(got.inf, want.inf) << dtype_name(c.t) << " n=" << n;
      EXPECT_EQ(got.first_bad, want.first_bad) << dtype_name(c.t) << " n=" << n;
      if (n == 50'001) {
        EXPECT_GT(want.nan + want.inf, 20u) << "the random data must hold some NaN/Inf";
      }
    }
  }
}

TEST(Convert, DtypeCastLeavesIntegersAloneAndReportsNonFinite) {
  TempDir dir;
  Checkpoint in;
  in.meta.step = 7;
  std::vector<float> w = {1.0f, 0.1f, std::nanf(""), INFINITY, 1e6f, -3.14159f};
  Tensor tw{{"w", DType::f32, {2, 3}}, {}};
  tw.data.resize(w.size() * 4);
  std::memcpy(tw.data.data(), w.data(), tw.data.size());
  in.tensors = {tw, test::random_tensor("step", DType::i64, {1}, 1), test::random_tensor("mask", DType::boolean, {9}, 2),
                test::random_tensor("d", DType::f64, {5}, 3)};
  save_checkpoint(dir / "in.safetensors", in);

  ConvertOptions o;
  o.dtype = DType::f16;
  o.chunk_bytes = 4;
  const ConvertReport rep = convert_checkpoint(dir / "in.safetensors", dir / "out.h5", o);
  const Checkpoint out = load_checkpoint(dir / "out.h5");
  EXPECT_EQ(out.meta, in.meta);
  EXPECT_EQ(out.tensors[0].info.dtype, DType::f16);
  EXPECT_EQ(out.tensors[3].info.dtype, DType::f16);
  for (int i : {1, 2}) {
    EXPECT_EQ(out.tensors[i].info, in.tensors[i].info);
    EXPECT_TRUE(out.tensors[i].data == in.tensors[i].data);
  }
  std::vector<std::uint16_t> h(6);
  std::memcpy(h.data(), out.tensors[0].data.data(), 12);
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (std::isnan(w[i])) EXPECT_TRUE(std::isnan(f16_to_f32(h[i])));
    else EXPECT_EQ(h[i], f32_to_f16(w[i])) << i;
  }
  ASSERT_GE(rep.issues.size(), 1u);
  EXPECT_EQ(rep.issues[0].tensor, "w");
  EXPECT_EQ(rep.issues[0].scan.nan, 1u);
  EXPECT_EQ(rep.issues[0].scan.inf, 1u);
  EXPECT_EQ(rep.issues[0].overflow, 1u);  // 1e6

  o.fail_on_nonfinite = true;
  try {
    convert_checkpoint(dir / "in.safetensors", dir / "strict.h5", o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("in.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "strict.h5"));
  o.dtype = DType::i32;
  EXPECT_THROW(convert_checkpoint(dir / "in.safetensors", dir / "int.h5", o), Error);
}

}  // namespace
}  // namespace wsm
