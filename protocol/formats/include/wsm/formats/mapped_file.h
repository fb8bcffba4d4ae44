#pragma once
// A read-only mapping of a whole file, and page-level hints for streaming through mapped bytes:
// readers that store tensors contiguously (safetensors, uncompressed HDF5) hand out spans into it,
// so the merge engine reads checkpoints in place instead of copying them into buffers.
#include <cstddef>
#include <filesystem>
#include <span>

namespace wsm {

// Owns a read-only shared mapping of a file; unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::span<const std::byte> bytes() const { return {data_, size_}; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Faults the pages of `bytes` in ahead of use (one system call instead of a fault per page), so a
// reader thread can take that cost while another thread computes. Advisory: errors are ignored.
void prefetch_mapped(std::span<const std::byte> bytes);

// Drops the whole pages inside `bytes` from this process's resident set after use; the data stays
// valid (the page cache keeps it), so streaming a large file keeps RSS flat. Advisory.
void release_mapped(std::span<const std::byte> bytes);

}  // namespace wsm
