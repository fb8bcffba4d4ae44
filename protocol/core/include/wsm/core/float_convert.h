#pragma once
// The float16 / bfloat16 <-> float32 conversions, one definition for every part: the host code
// (protocol, trainer, tools) and the CUDA merge kernel (compiled by nvcc for the device), so the CPU
// and GPU paths round identically. Round to nearest even; subnormals, inf and NaN handled.
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define WSM_HD __host__ __device__ __forceinline__
#else
#define WSM_HD inline __attribute__((always_inline))
#endif

namespace wsm {

WSM_HD std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
WSM_HD float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// bfloat16 is the upper half of an IEEE float32.
WSM_HD float bf16_to_f32(std::uint16_t h) { return bits_float(std::uint32_t(h) << 16); }

WSM_HD std::uint16_t f32_to_bf16(float f) {
  std::uint32_t bits = float_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t(bits >> 16);
}

// Branch-free so compilers vectorise it: the 15 magnitude bits shifted into an f32 and scaled by
// 2^112 are exact for normals and subnormals; inf/NaN get the f32 all-ones exponent.
WSM_HD float f16_to_f32(std::uint16_t h) {
  const std::uint32_t mag = std::uint32_t(h & 0x7fffu) << 13;
  const float scaled = bits_float(mag) * 5.192296858534828e33f;  // 2^112
  std::uint32_t bits = float_bits(scaled);
  bits = (mag >= 0x0f800000u) ? (mag | 0x7f800000u) : bits;  // exponent 31: inf / NaN
  return bits_float(bits | (std::uint32_t(h & 0x8000u) << 16));
}

WSM_HD std::uint16_t f32_to_f16(float f) {
  const std::uint32_t bits = float_bits(f);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN stays NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to inf
  if (abs >= 0x38800000u) {                       // normal half
    std::uint32_t r = abs - 0x38000000u;          // rebias exponent 127 -> 15
    r += 0x0fffu + ((r >> 13) & 1u);              // round to nearest even
    return sign | std::uint16_t(r >> 13);
  }
  if (abs < 0x33000000u) return sign;  // below half the smallest subnormal: zero
  // Subnormal half: shift the full mantissa into place, rounding to nearest even.
  const std::uint32_t exp = abs >> 23;
  const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126 - exp;  // 14..24
  std::uint32_t half = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1);
  const std::uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
  return sign | std::uint16_t(half);
}

}  // namespace wsm
