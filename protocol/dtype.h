#pragma once
// Element types of checkpoint tensors, and the float16/bfloat16 conversions every part shares.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace wsm {

enum class DType : std::uint8_t { f32, f16, bf16, f64, i8, i16, i32, i64, u8, u16, u32, u64, boolean };

std::size_t dtype_size(DType t);
// Short names used everywhere in wsm: "f32", "f16", "bf16", "f64", "i8".."i64", "u8".."u64", "bool".
std::string_view dtype_name(DType t);
// Accepts wsm's names (and common aliases such as "float32", "bfloat16", "F32", "BF16").
std::optional<DType> parse_dtype(std::string_view name);
inline bool is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64; }

// bfloat16 is the upper half of an IEEE float32; conversion to it rounds to nearest even.
inline float bf16_to_f32(std::uint16_t h) {
  std::uint32_t bits = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40);  // quiet NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t(bits >> 16);
}

// IEEE binary16 <-> float32, round to nearest even, subnormals and inf/NaN handled.
float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_f16(float f);

}  // namespace wsm
