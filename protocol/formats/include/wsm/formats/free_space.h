#pragma once
// Room on the output's filesystem, checked before a writer starts: an input that declares a huge
// (sparse, fill-valued) tensor must be refused up front, not fill the disk and fail half-way.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

// Bytes an unprivileged process may still write on the filesystem holding `path` (statvfs
// f_bavail x f_frsize); `path` may be a file that does not exist yet (its directory is asked).
// UINT64_MAX when that directory does not exist either (nothing to check against).
std::uint64_t free_bytes(const std::filesystem::path& path);

// Throws a one-line wsm::Error naming `out` when `need` bytes exceed `available`.
void require_free_space(const std::filesystem::path& out, std::uint64_t need, std::uint64_t available);

// The tensor bytes of a manifest, saturating at UINT64_MAX instead of wrapping.
std::uint64_t payload_bytes(const std::vector<TensorInfo>& tensors);

// Both in one: checks `need` against free_bytes(out).
void require_free_space(const std::filesystem::path& out, std::uint64_t need);

}  // namespace wsm
