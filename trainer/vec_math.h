#pragma once
// exp and tanh written as plain arithmetic, so that loops calling them vectorise: libm's expf and
// tanhf are scalar calls and were a third of a training step (GELU, softmax). The float versions
// are Cephes' expf (range reduction by ln 2, degree-5 polynomial, about 1 ulp on the range that
// matters here); the double versions stay libm's, because double is the finite-difference reference.
#include <bit>
#include <cmath>
#include <cstdint>

namespace wsm::trainer::cpu {

// e^x for x in about [-87, 88]; inputs outside are clamped (e^-87 ~ 1e-38, far below what a softmax
// or tanh can resolve next to 1). No branches: the compiler turns a loop of these into SIMD code.
inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |n| < 2^22, round to nearest even).
  const float shifter = 12582912.0f;
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693359375f;  // ln 2 in two parts: hi has few bits, so n * hi is exact
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  return p * std::bit_cast<float>(bits);
}

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = e^(-2|x|); absolute error ~1e-7.
inline float tanh_f32(float x) {
  const float e = exp_f32(-2.0f * std::fabs(x));
  return std::copysign((1.0f - e) / (1.0f + e), x);
}

template <class F>
inline F vexp(F x) {
  if constexpr (sizeof(F) == sizeof(float)) return exp_f32(x);
  else return std::exp(x);
}
template <class F>
inline F vtanh(F x) {
  if constexpr (sizeof(F) == sizeof(float)) return tanh_f32(x);
  else return std::tanh(x);
}

}  // namespace wsm::trainer::cpu
