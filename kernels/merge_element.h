#pragma once
// The per-element arithmetic of the merge, shared by every backend: the CPU backend (blocked,
// vectorised), the CUDA fused kernel (compiled by nvcc for the device) and the tests (compiled on
// the host). Keeping one definition is what makes the backends bit-identical.
//
//   acc_m = 0;  for j = 0..K-1: acc_m = fma(w[m][j], x_j, acc_m);  out_m = round_rne(acc_m)
//
// Acc is float (weights rounded to f32 once) or double. Inputs f32/f16/bf16/f64 are widened exactly
// (f64 inputs are rounded to f32 when Acc is float). Outputs are rounded to nearest even once: a double
// accumulator goes to f16/bf16 through a round-to-odd f32, which equals direct RNE (24 >= 11 + 2 bits).
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "protocol/dtype.h"

#if defined(__CUDACC__)
#define WSM_HD __host__ __device__ __forceinline__
#else
#define WSM_HD inline __attribute__((always_inline))
#endif

namespace wsm::kernels::elem {

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

// Branch-free so the compiler can vectorise it: the 15 magnitude bits shifted into an f32 and scaled
// by 2^112 are exact for normals and subnormals; inf/NaN get the f32 all-ones exponent.
WSM_HD float f16_to_f32(std::uint16_t h) {
  const std::uint32_t mag = std::uint32_t(h & 0x7fffu) << 13;
  const float scaled = bits_float(mag) * 5.192296858534828e33f;  // 2^112
  std::uint32_t bits = float_bits(scaled);
  bits = (mag >= 0x0f800000u) ? (mag | 0x7f800000u) : bits;  // exponent 31: inf / NaN
  return bits_float(bits | (std::uint32_t(h & 0x8000u) << 16));
}

WSM_HD float bf16_to_f32(std::uint16_t h) { return bits_float(std::uint32_t(h) << 16); }

WSM_HD std::uint16_t f32_to_bf16(float f) {
  std::uint32_t bits = float_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40u);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t(bits >> 16);
}

WSM_HD std::uint16_t f32_to_f16(float f) {
  const std::uint32_t bits = float_bits(f);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  if (abs >= 0x38800000u) {                       // normal half
    std::uint32_t r = abs - 0x38000000u;
    r += 0x0fffu + ((r >> 13) & 1u);
    return sign | std::uint16_t(r >> 13);
  }
  if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
  const std::uint32_t exp = abs >> 23;
  const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126 - exp;  // 14..24
  std::uint32_t half = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1);
  const std::uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (half & 1u))) ++half;
  return sign | std::uint16_t(half);
}

// double -> float rounding to odd: exact when representable, else the truncation with its last bit
// set. A later RNE to a format with <= 22 significand bits then equals a direct RNE from double.
WSM_HD float f64_to_f32_odd(double d) {
  if (d != d) return static_cast<float>(d);
  float f = static_cast<float>(d);
  if (static_cast<double>(f) == d) return f;
  std::uint32_t bits = float_bits(f);
  if (::fabs(static_cast<double>(f)) > ::fabs(d)) --bits;  // step back toward zero
  return bits_float(bits | 1u);
}

// Loads element i of a typed buffer, widened to Acc.
template <class Acc>
WSM_HD Acc load(const void* p, DType t, std::size_t i) {
  switch (t) {
    case DType::f16: return static_cast<Acc>(f16_to_f32(static_cast<const std::uint16_t*>(p)[i]));
    case DType::bf16: return static_cast<Acc>(bf16_to_f32(static_cast<const std::uint16_t*>(p)[i]));
    case DType::f64: return static_cast<Acc>(static_cast<const double*>(p)[i]);
    default: return static_cast<Acc>(static_cast<const float*>(p)[i]);
  }
}

// Rounds an accumulator to the output dtype (nearest even) and stores it at element i.
WSM_HD void store(void* p, DType t, std::size_t i, float v) {
  switch (t) {
    case DType::f16: static_cast<std::uint16_t*>(p)[i] = f32_to_f16(v); break;
    case DType::bf16: static_cast<std::uint16_t*>(p)[i] = f32_to_bf16(v); break;
    case DType::f64: static_cast<double*>(p)[i] = static_cast<double>(v); break;
    default: static_cast<float*>(p)[i] = v; break;
  }
}
WSM_HD void store(void* p, DType t, std::size_t i, double v) {
  switch (t) {
    case DType::f16: static_cast<std::uint16_t*>(p)[i] = f32_to_f16(f64_to_f32_odd(v)); break;
    case DType::bf16: static_cast<std::uint16_t*>(p)[i] = f32_to_bf16(f64_to_f32_odd(v)); break;
    case DType::f64: static_cast<double*>(p)[i] = v; break;
    default: static_cast<float*>(p)[i] = static_cast<float>(v); break;
  }
}

WSM_HD float fma_acc(float w, float x, float acc) { return ::fmaf(w, x, acc); }
WSM_HD double fma_acc(double w, double x, double acc) { return ::fma(w, x, acc); }

// One element of output m: the reference definition of the merge. `w` holds M x K weights already
// converted to Acc (row-major), `in`/`in_t` the K inputs.
template <class Acc>
WSM_HD Acc merge_one(const void* const* in, const DType* in_t, const Acc* w_row, int k, std::size_t i) {
  Acc acc = Acc(0);
  for (int j = 0; j < k; ++j) acc = fma_acc(w_row[j], load<Acc>(in[j], in_t[j], i), acc);
  return acc;
}

}  // namespace wsm::kernels::elem
