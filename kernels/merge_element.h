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

#include "wsm/core/dtype.h"
#include "wsm/core/float_convert.h"

namespace wsm::kernels::elem {

// The conversions themselves are wsm/core/float_convert.h's (host and device).
using wsm::bf16_to_f32;
using wsm::bits_float;
using wsm::f16_to_f32;
using wsm::f32_to_bf16;
using wsm::f32_to_f16;
using wsm::float_bits;

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
