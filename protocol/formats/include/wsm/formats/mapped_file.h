#pragma once
// A read-only mapping of a whole file, and page-level hints for streaming through mapped bytes:
// readers that store tensors contiguously (safetensors, uncompressed HDF5) hand out spans into it,
// so the merge engine reads checkpoints in place instead of copying them into buffers.
//
// A file truncated while mapped kills the process with SIGBUS at the next read of a page past its
// new end. A process that calls guard_mapped_reads() (`wsm merge`, `wsm serve`) instead gets a SIGBUS handler
// that knows every mapping made here: a fault inside one replaces the rest of that mapping with
// zero pages, marks it truncated and lets the read go on (faults elsewhere go to the handler
// before it). Such a process must check changed_mapped_files() before trusting what it read.
#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "wsm/formats/file_stamp.h"

namespace wsm {

// Owns a read-only shared mapping of a file; unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return stamp_.path; }

  // Why the bytes read may not be the file's as it was mapped: truncated under a read, or its
  // size or modification time differ now. Empty when unchanged.
  std::string changed() const;

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  int slot_ = -1;  // in the SIGBUS handler's registry; -1: not registered (full)
  FileStamp stamp_;
};

// Installs the SIGBUS handler above; once per process (later calls do nothing).
void guard_mapped_reads();

// "FILE: what changed" for every file mapped now that changed() (empty: none).
std::vector<std::string> changed_mapped_files();
// The same, for the mappings of `files` only (a daemon's other work may map other files).
std::vector<std::string> changed_mapped_files(std::span<const std::filesystem::path> files);

// Faults the pages of `bytes` in ahead of use (one system call instead of a fault per page), so a
// reader thread can take that cost while another thread computes. Advisory: errors are ignored.
void prefetch_mapped(std::span<const std::byte> bytes);

// Drops the whole pages inside `bytes` from this process's resident set after use; the data stays
// valid (the page cache keeps it), so streaming a large file keeps RSS flat. Advisory.
void release_mapped(std::span<const std::byte> bytes);

}  // namespace wsm
