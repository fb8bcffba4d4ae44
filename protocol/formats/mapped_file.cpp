#include "wsm/formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "wsm/core/error.h"

namespace wsm {

MappedFile::MappedFile(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path.string() + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error(path.string() + ": cannot stat: " + std::strerror(err));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw Error(path.string() + ": cannot mmap: " + std::strerror(err));
    }
    data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_);
}

namespace {

// The whole pages inside [p, p+n), as an address range (empty when none).
std::pair<std::uintptr_t, std::uintptr_t> whole_pages(std::span<const std::byte> bytes, bool outward) {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(bytes.data());
  const auto end = begin + bytes.size();
  if (outward) return {begin / page * page, (end + page - 1) / page * page};
  return {(begin + page - 1) / page * page, end / page * page};
}

}  // namespace

void prefetch_mapped(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  const auto [lo, hi] = whole_pages(bytes, true);
#ifdef MADV_POPULATE_READ
  if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_POPULATE_READ) == 0) return;
#endif
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_WILLNEED);  // older kernels: read-ahead only
}

void release_mapped(std::span<const std::byte> bytes) {
  const auto [lo, hi] = whole_pages(bytes, false);
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace wsm
