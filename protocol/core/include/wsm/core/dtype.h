#pragma once
// Element types of checkpoint tensors (the float16/bfloat16 conversions are in float_convert.h).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "wsm/core/float_convert.h"

namespace wsm {

enum class DType : std::uint8_t { f32, f16, bf16, f64, i8, i16, i32, i64, u8, u16, u32, u64, boolean };

std::size_t dtype_size(DType t);
// Short names used everywhere in wsm: "f32", "f16", "bf16", "f64", "i8".."i64", "u8".."u64", "bool".
std::string_view dtype_name(DType t);
// Accepts wsm's names (and common aliases such as "float32", "bfloat16", "F32", "BF16").
std::optional<DType> parse_dtype(std::string_view name);
inline bool is_float(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64; }

}  // namespace wsm
