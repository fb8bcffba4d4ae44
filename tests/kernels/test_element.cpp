// The per-element code of kernels/merge_element.h (shared by the CPU backend and the CUDA kernel)
// and the conversions it takes from wsm/core/float_convert.h, against independent double-precision
// decoding and rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "kernels/merge_element.h"

namespace wsm::kernels {
namespace {

std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Direct round-to-nearest-even of a positive double to the 16-bit format whose non-negative bit
// patterns 0..max_finite are ordered by value: binary search, then the nearer neighbour (ties even).
template <class Decode>
std::uint16_t rne16(double d, Decode decode, std::uint16_t max_finite, std::uint16_t inf) {
  std::uint32_t lo = 0, hi = max_finite;
  if (d >= decode(max_finite)) {
    // Above the largest finite: overflow when at or past the midpoint to the next (virtual) step.
    const double step = double(decode(max_finite)) - double(decode(std::uint16_t(max_finite - 1)));
    return d >= double(decode(max_finite)) + step / 2 ? inf : max_finite;
  }
  while (hi - lo > 1) {
    const std::uint32_t mid = (lo + hi) / 2;
    (double(decode(std::uint16_t(mid))) <= d ? lo : hi) = mid;
  }
  const double a = decode(std::uint16_t(lo)), b = decode(std::uint16_t(hi));
  if (d - a < b - d) return std::uint16_t(lo);
  if (d - a > b - d) return std::uint16_t(hi);
  return std::uint16_t(lo % 2 == 0 ? lo : hi);
}

// Every f16 and bf16 bit pattern decoded from its fields in double arithmetic (ldexp): the
// reference for wsm/core/float_convert.h, which the kernels and the host share.
double decode_f16(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0x1f) return mant ? NAN : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(double(mant), -24);
  return sign * std::ldexp(double(1024 + mant), exp - 25);
}
double decode_bf16(std::uint16_t h) {
  const int exp = (h >> 7) & 0xff, mant = h & 0x7f;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0xff) return mant ? NAN : sign * INFINITY;
  if (exp == 0) return sign * std::ldexp(double(mant), -133);
  return sign * std::ldexp(double(128 + mant), exp - 134);
}

TEST(MergeElement, HalfAndBfloatDecodeEveryValueExactly) {
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const auto u = std::uint16_t(h);
    for (auto [got, want] : {std::pair{double(elem::f16_to_f32(u)), decode_f16(u)},
                             std::pair{double(elem::bf16_to_f32(u)), decode_bf16(u)}}) {
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(got)) << "0x" << std::hex << h;
      } else {
        ASSERT_EQ(got, want) << "0x" << std::hex << h;
        ASSERT_EQ(std::signbit(got), std::signbit(want)) << "0x" << std::hex << h;
      }
    }
  }
}

// f32 -> f16/bf16 against rne16 (a search over the decoded values) on random and dense samples.
TEST(MergeElement, FloatToHalfAndBfloatRoundToNearestEven) {
  std::mt19937 rng(1);
  std::vector<std::uint32_t> samples = {0, 0x80000000u, 0x7f800000u, 0xff800000u, 0x477ff000u,
                                        0x477fefffu, 0x38800000u, 0x387fffffu, 0x33000000u, 0x33000001u};
  for (int i = 0; i < 1'000'000; ++i) samples.push_back(rng());
  for (std::uint32_t u = 0x33000000u; u < 0x47800000u; u += 37) samples.push_back(u);  // the f16 range
  for (std::uint32_t u : samples) {
    const float f = from_bits(u);
    if (std::isnan(f)) {
      EXPECT_EQ(elem::f32_to_f16(f) & 0x7fff, 0x7e00) << "f32 0x" << std::hex << u;
      EXPECT_GT(elem::f32_to_bf16(f) & 0x7fff, 0x7f80) << "f32 0x" << std::hex << u;
      continue;
    }
    const double d = std::fabs(double(f));
    const std::uint16_t sign = (u & 0x80000000u) ? 0x8000 : 0;
    ASSERT_EQ(elem::f32_to_f16(f), sign | rne16(d, decode_f16, 0x7bff, 0x7c00)) << "f32 0x" << std::hex << u;
    ASSERT_EQ(elem::f32_to_bf16(f), sign | rne16(d, decode_bf16, 0x7f7f, 0x7f80)) << "f32 0x" << std::hex << u;
  }
}

TEST(MergeElement, DoubleAccumulatorRoundsOnceToHalfAndBfloat) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> exp16(-26, 16), expbf(-133, 127);
  for (int i = 0; i < 200'000; ++i) {
    // Plain random values, and values right next to a 16-bit midpoint (the double-rounding trap).
    double d16 = std::ldexp(mant(rng), exp16(rng)), dbf = std::ldexp(mant(rng), expbf(rng));
    if (i % 2) {
      const auto h = std::uint16_t(rng() % 0x7bfe);
      const double mid = (double(wsm::f16_to_f32(h)) + double(wsm::f16_to_f32(std::uint16_t(h + 1)))) / 2;
      d16 = mid + (i % 4 == 1 ? 1 : -1) * std::ldexp(mid, -40);
      const auto g = std::uint16_t(rng() % 0x7f7e);
      const double midb = (double(wsm::bf16_to_f32(g)) + double(wsm::bf16_to_f32(std::uint16_t(g + 1)))) / 2;
      dbf = midb + (i % 4 == 1 ? 1 : -1) * std::ldexp(midb, -40);
    }
    std::uint16_t got16, gotbf;
    elem::store(&got16, DType::f16, 0, d16);
    elem::store(&gotbf, DType::bf16, 0, dbf);
    ASSERT_EQ(got16, rne16(d16, wsm::f16_to_f32, 0x7bff, 0x7c00)) << d16;
    ASSERT_EQ(gotbf, rne16(dbf, wsm::bf16_to_f32, 0x7f7f, 0x7f80)) << dbf;
    // Negative values mirror.
    elem::store(&got16, DType::f16, 0, -d16);
    ASSERT_EQ(got16, 0x8000 | rne16(d16, wsm::f16_to_f32, 0x7bff, 0x7c00)) << -d16;
  }
}

TEST(MergeElement, MergeOneIsTheFmaChain) {
  const float x0[] = {1.5f}, x1[] = {-2.25f}, x2[] = {3.0f};
  const void* in[] = {x0, x1, x2};
  const DType t[] = {DType::f32, DType::f32, DType::f32};
  const float w[] = {0.1f, 0.2f, 0.7f};
  float expect = 0;
  for (int j = 0; j < 3; ++j) expect = std::fma(w[j], static_cast<const float*>(in[j])[0], expect);
  EXPECT_EQ(bits(expect), bits(elem::merge_one<float>(in, t, w, 3, 0)));
}

}  // namespace
}  // namespace wsm::kernels
