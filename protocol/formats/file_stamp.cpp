#include "wsm/formats/file_stamp.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "wsm/core/error.h"

namespace wsm {

FileStamp FileStamp::of(const std::filesystem::path& path, const struct stat& st) {
  return {path, std::uint64_t(st.st_dev), std::uint64_t(st.st_ino), std::uint64_t(st.st_size), st.st_mtim};
}

FileStamp FileStamp::of(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(path.string() + ": cannot stat: " + std::strerror(errno));
  return of(path, st);
}

std::string FileStamp::changed() const {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  if (std::uint64_t(st.st_dev) != dev || std::uint64_t(st.st_ino) != ino) return "replaced by another file while being read";
  if (std::uint64_t(st.st_size) != size)
    return "changed while being read (" + std::to_string(size) + " bytes when opened, " + std::to_string(st.st_size) +
           " now)";
  if (st.st_mtim.tv_sec != mtime.tv_sec || st.st_mtim.tv_nsec != mtime.tv_nsec)
    return "changed while being read (rewritten in place: its modification time moved)";
  return {};
}

}  // namespace wsm
