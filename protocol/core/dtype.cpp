#include "wsm/core/dtype.h"

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

}  // namespace wsm
