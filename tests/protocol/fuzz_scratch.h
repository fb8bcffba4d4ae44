#pragma once
// Where the fuzz targets write each input: a directory of this process's own in /dev/shm (tmpfs)
// when there is one. Written to /tmp on a disk, the per-input file write was most of an execution
// (sharded_index runs about ten times as many inputs per second on tmpfs: docs/fuzzing.md).
// Removed at exit.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace wsm::fuzz {

inline const std::filesystem::path& scratch_dir() {
  struct Dir {
    std::filesystem::path path;
    Dir() {
      std::error_code ec;
      const std::filesystem::path shm = "/dev/shm";
      const auto base = std::filesystem::is_directory(shm, ec) && ::access(shm.c_str(), W_OK) == 0
                            ? shm
                            : std::filesystem::temp_directory_path();
      path = base / ("wsm-fuzz-" + std::to_string(::getpid()));
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

}  // namespace wsm::fuzz
