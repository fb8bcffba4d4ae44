// The per-element conversions of kernels/merge_element.h (shared by the CPU backend and the CUDA
// kernel) against protocol/dtype.h and against an independent double-precision rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

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

TEST(MergeElement, HalfToFloatMatchesProtocolForEveryValue) {
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const float a = elem::f16_to_f32(std::uint16_t(h)), b = wsm::f16_to_f32(std::uint16_t(h));
    if (std::isnan(b))
      ASSERT_TRUE(std::isnan(a)) << h;
    else
      ASSERT_EQ(bits(a), bits(b)) << "f16 0x" << std::hex << h;
    ASSERT_EQ(bits(elem::bf16_to_f32(std::uint16_t(h))), bits(wsm::bf16_to_f32(std::uint16_t(h))));
  }
}

TEST(MergeElement, FloatToHalfMatchesProtocol) {
  std::mt19937 rng(1);
  std::vector<std::uint32_t> samples = {0, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x477ff000u,
                                        0x477fefffu, 0x38800000u, 0x387fffffu, 0x33000000u, 0x33000001u};
  for (int i = 0; i < 2'000'000; ++i) samples.push_back(rng());
  // Dense sweep over the f16 range, where rounding cases live.
  for (std::uint32_t u = 0x33000000u; u < 0x47800000u; u += 37) samples.push_back(u);
  for (std::uint32_t u : samples) {
    const float f = from_bits(u);
    ASSERT_EQ(elem::f32_to_f16(f), wsm::f32_to_f16(f)) << "f32 0x" << std::hex << u;
    ASSERT_EQ(elem::f32_to_bf16(f), wsm::f32_to_bf16(f)) << "f32 0x" << std::hex << u;
  }
}

// Direct round-to-nearest-even of a positive double to the 16-bit format whose non-negative bit
// patterns 0..max_finite are ordered by value: binary search, then the nearer neighbour (ties even).
std::uint16_t rne16(double d, float (*decode)(std::uint16_t), std::uint16_t max_finite, std::uint16_t inf) {
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
