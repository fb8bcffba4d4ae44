#include "protocol/dtype.h"

#include <array>
#include <cctype>
#include <string>

namespace wsm {

namespace {
struct DTypeEntry {
  DType type;
  std::size_t size;
  std::string_view name;
};
constexpr std::array<DTypeEntry, 13> kTypes{{
    {DType::f32, 4, "f32"},  {DType::f16, 2, "f16"},  {DType::bf16, 2, "bf16"}, {DType::f64, 8, "f64"},
    {DType::i8, 1, "i8"},    {DType::i16, 2, "i16"},  {DType::i32, 4, "i32"},   {DType::i64, 8, "i64"},
    {DType::u8, 1, "u8"},    {DType::u16, 2, "u16"},  {DType::u32, 4, "u32"},   {DType::u64, 8, "u64"},
    {DType::boolean, 1, "bool"},
}};
}  // namespace

std::size_t dtype_size(DType t) { return kTypes[static_cast<std::size_t>(t)].size; }
std::string_view dtype_name(DType t) { return kTypes[static_cast<std::size_t>(t)].name; }

std::optional<DType> parse_dtype(std::string_view name) {
  std::string s(name);
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const auto& e : kTypes)
    if (s == e.name) return e.type;
  static constexpr std::pair<std::string_view, DType> kAliases[] = {
      {"float32", DType::f32}, {"float", DType::f32},   {"float16", DType::f16}, {"half", DType::f16},
      {"bfloat16", DType::bf16}, {"float64", DType::f64}, {"double", DType::f64}, {"int8", DType::i8},
      {"int16", DType::i16},   {"int32", DType::i32},   {"int64", DType::i64},   {"uint8", DType::u8},
      {"uint16", DType::u16},  {"uint32", DType::u32},  {"uint64", DType::u64},  {"boolean", DType::boolean},
  };
  for (const auto& [alias, type] : kAliases)
    if (s == alias) return type;
  return std::nullopt;
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {
    // Subnormal half: normalise into a float32 normal.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (std::uint32_t(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t f32_to_f16(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;  // NaN stays NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to inf
  if (abs >= 0x38800000u) {                        // normal half
    std::uint32_t r = abs - 0x38000000u;           // rebias exponent 127 -> 15
    r += 0x0fffu + ((r >> 13) & 1u);               // round to nearest even
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
