#pragma once
// A file's identity (device, inode), size and modification time, taken when it is opened, to tell
// afterwards whether what was read is still the file at that path: `wsm merge` refuses to publish
// outputs made from an input that was truncated, rewritten in place or replaced while being read.
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <string>

struct stat;

namespace wsm {

struct FileStamp {
  std::filesystem::path path;
  std::uint64_t dev = 0, ino = 0, size = 0;
  std::timespec mtime{};

  static FileStamp of(const std::filesystem::path& path);  // throws wsm::Error naming the file
  static FileStamp of(const std::filesystem::path& path, const struct stat& st);
  // Why the file at `path` is not this one any more ("" when it is; a removed file is not a
  // change: what was opened or mapped is still readable as it was).
  std::string changed() const;
};

}  // namespace wsm
