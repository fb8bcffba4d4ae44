#pragma once
// The safetensors header: parsing with every rule of the format enforced, serialising, and the
// mapping of wsm's CheckpointMeta onto the string->string `__metadata__` object.
//
// Layout: u64 little-endian N | N bytes of JSON | data. The JSON maps each tensor name to
// {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets relative to the data),
// plus an optional "__metadata__" object of strings. This file depends only on nlohmann-json so
// the libFuzzer target can build it alone.
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

// The reference implementation's limit; a longer header is rejected before it is read.
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsEntry {
  TensorInfo info;
  std::uint64_t begin = 0;  // byte offsets into the data section
  std::uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // sorted by data offset (the storage order)
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;  // 8 + N: where the data section begins in the file
};

// "F32", "BF16", "BOOL", ... (the format's names) <-> DType.
std::string_view safetensors_dtype_name(DType t);
std::optional<DType> parse_safetensors_dtype(std::string_view name);

// Reads the 8-byte length prefix of `file_prefix` (at least 8 bytes) and checks it against the
// limit and the file size. `where` names the file in errors.
std::uint64_t safetensors_header_length(std::span<const std::byte> file_prefix, std::uint64_t file_size,
                                        const std::string& where);

// Parses and validates the JSON header `json` for a data section of `data_size` bytes: known
// dtypes, shape x dtype size = byte length, offsets inside the data, no overlaps or holes, no
// duplicate names (at any level), string-only metadata. Throws wsm::Error naming `where` and the tensor.
SafetensorsHeader parse_safetensors_header(std::string_view json, std::uint64_t data_size, const std::string& where);

// Whole-file convenience (what the fuzzer drives): prefix + header + data held in `file`.
SafetensorsHeader parse_safetensors_file(std::span<const std::byte> file, const std::string& where);

// The complete header block (length prefix, JSON, space padding so the data starts 8-byte
// aligned) for tensors laid out back to back in the given order.
std::string serialize_safetensors_header(const std::vector<TensorInfo>& tensors,
                                         const std::map<std::string, std::string>& metadata);

// CheckpointMeta <-> `__metadata__`: wsm.step, wsm.tokens (decimal), wsm.lr (shortest round-trip
// decimal), wsm.run_id, and every extra key as-is. "format": "pt" (which Hugging Face loaders
// require) is added on write when absent and hidden on read. Extra keys may not use reserved names.
std::map<std::string, std::string> meta_to_strings(const CheckpointMeta& meta);
CheckpointMeta meta_from_strings(const std::map<std::string, std::string>& strings, const std::string& where);

}  // namespace wsm
