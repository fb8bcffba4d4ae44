#pragma once
// Test helpers for the merge kernels: random typed buffers and the double-precision reference.
// Values are read back through wsm/core/dtype.h's conversions, never through kernels/, so the
// reference is independent of the code under test.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "wsm/core/dtype.h"

namespace wsm::test {

inline const DType kFloatTypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64};

// A typed host buffer with raw bytes.
struct Buffer {
  DType dtype = DType::f32;
  std::vector<std::byte> bytes;
  Buffer(DType t, std::size_t n) : dtype(t), bytes(n * dtype_size(t)) {}
  std::size_t size() const { return bytes.size() / dtype_size(dtype); }

  double get(std::size_t i) const {
    const std::byte* p = bytes.data() + i * dtype_size(dtype);
    std::uint16_t h;
    float f;
    double d;
    switch (dtype) {
      case DType::f16: std::memcpy(&h, p, 2); return f16_to_f32(h);
      case DType::bf16: std::memcpy(&h, p, 2); return bf16_to_f32(h);
      case DType::f64: std::memcpy(&d, p, 8); return d;
      default: std::memcpy(&f, p, 4); return f;
    }
  }
  // Stores v rounded to the buffer's dtype.
  void set(std::size_t i, double v) {
    std::byte* p = bytes.data() + i * dtype_size(dtype);
    const float f = static_cast<float>(v);
    std::uint16_t h;
    switch (dtype) {
      case DType::f16: h = f32_to_f16(f); std::memcpy(p, &h, 2); break;
      case DType::bf16: h = f32_to_bf16(f); std::memcpy(p, &h, 2); break;
      case DType::f64: std::memcpy(p, &v, 8); break;
      default: std::memcpy(p, &f, 4); break;
    }
  }
};

// Values spread over a few orders of magnitude, both signs, all finite in every dtype.
inline Buffer random_buffer(DType t, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_int_distribution<int> scale(-6, 6);
  Buffer b(t, n);
  for (std::size_t i = 0; i < n; ++i) b.set(i, normal(rng) * std::ldexp(1.0, scale(rng)));
  return b;
}

// Unit of least precision of dtype t at magnitude |v| (normal range; subnormal spacing below).
inline double ulp(DType t, double v) {
  int mant_bits = 24, min_exp = -126;
  switch (t) {
    case DType::f16: mant_bits = 11; min_exp = -14; break;
    case DType::bf16: mant_bits = 8; min_exp = -126; break;
    case DType::f64: mant_bits = 53; min_exp = -1022; break;
    default: break;
  }
  int e = v == 0 ? min_exp : std::max(std::ilogb(v), min_exp);
  return std::ldexp(1.0, e - (mant_bits - 1));
}

// out_m[i] = sum_j W[m][j] * x_j[i] in double, plus sum_j |W x| for the error bound.
struct Reference {
  std::vector<double> value, magnitude;
};
inline Reference reference_merge(const std::vector<Buffer>& in, const std::vector<double>& w, std::size_t m) {
  const std::size_t k = in.size(), n = in.empty() ? 0 : in[0].size();
  Reference r{std::vector<double>(n), std::vector<double>(n)};
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < k; ++j) {
      const double t = w[m * k + j] * in[j].get(i);
      r.value[i] += t;
      r.magnitude[i] += std::fabs(t);
    }
  return r;
}

// Bound on |kernel - exact|: weights rounded to the accumulator, K fused steps, f64 inputs rounded
// to f32 in f32 mode (all relative to sum |W x|), then one rounding to the output dtype.
inline double error_bound(DType out, bool acc_f64, std::size_t k, double exact, double magnitude) {
  const double eps = acc_f64 ? std::ldexp(1.0, -53) : std::ldexp(1.0, -24);
  const double acc_err = (2.0 * double(k) + 3.0) * eps * magnitude;
  return acc_err + ulp(out, std::fabs(exact) + acc_err) + 1e-300;
}

}  // namespace wsm::test
