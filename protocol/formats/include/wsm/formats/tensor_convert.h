#pragma once
// Element-wise dtype casts and NaN/Inf scans over raw tensor bytes, and the streaming checkpoint
// conversion behind `wsm convert` (any format to any format, memory bounded by a chunk size).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

struct FiniteScan {
  std::uint64_t nan = 0, inf = 0;
  std::optional<std::uint64_t> first_bad;  // element index of the first NaN/Inf
  bool clean() const { return nan == 0 && inf == 0; }
};

// Counts NaN/Inf among `data`'s elements (integer/bool dtypes are always clean). `first_index`
// is the element index of data[0] within its tensor, so chunked scans report tensor positions.
FiniteScan scan_nonfinite(DType t, std::span<const std::byte> data, std::uint64_t first_index = 0);

// Adds the counts of `more` to `into`; first_bad becomes the lower of the two.
void add_scan(FiniteScan& into, const FiniteScan& more);
// "3 NaN and 0 Inf (first at element 17)".
std::string describe_nonfinite(const FiniteScan& s);

// Scans a whole tensor through a reader, chunk by chunk.
FiniteScan scan_tensor(CheckpointReader& reader, const TensorInfo& info, std::uint64_t chunk_bytes = 64 << 20);

// Casts elements between float dtypes (f32, f16, bf16, f64), rounding to nearest even (f64 to
// f16/bf16 goes through f32). Same dtype copies. Integer/bool dtypes are refused: wsm never casts
// them. Returns how many finite inputs became +-inf because they overflow the target type.
std::uint64_t cast_elements(DType from, std::span<const std::byte> src, DType to, std::span<std::byte> dst);

struct ConvertOptions {
  std::optional<DType> dtype;             // cast float tensors to this; integer/bool never cast
  std::uint64_t chunk_bytes = 64 << 20;   // most tensor bytes read at once (plus as much for output)
  WriteOptions write;                     // sharding / HDF5 chunking of the output
  bool fail_on_nonfinite = false;         // NaN/Inf in the input: error instead of a warning
};

struct ConvertIssue {
  std::string tensor;
  FiniteScan scan;            // NaN/Inf found in the input (kept as they are)
  std::uint64_t overflow = 0; // finite inputs that became inf through the cast
};

struct ConvertReport {
  std::string in_format;
  std::uint64_t tensors = 0, bytes_in = 0, bytes_out = 0;
  std::vector<ConvertIssue> issues;
};

// Streams every tensor of `in` into `out` (format from out's extension, see create_checkpoint);
// metadata is copied. Values are preserved bit for bit unless options.dtype asks for a cast.
ConvertReport convert_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                                 const ConvertOptions& options = {});
// Same, from an open reader (every read it is asked for is at most options.chunk_bytes long).
ConvertReport convert_checkpoint(CheckpointReader& reader, const std::filesystem::path& out,
                                 const ConvertOptions& options = {});

}  // namespace wsm
