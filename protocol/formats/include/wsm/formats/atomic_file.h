#pragma once
// Outputs are written to a temporary name in the same directory, fsynced, then renamed into place,
// so a crash or kill -9 never leaves a file that looks complete.
#include <filesystem>
#include <string_view>

namespace wsm {

class AtomicFile {
 public:
  // Works for a file or a directory (sharded sets): temp_path() is "<final>.tmp-<pid>-<n>".
  explicit AtomicFile(std::filesystem::path final_path);
  ~AtomicFile();  // removes the temporary (file or directory tree) unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& final_path() const { return final_; }
  // fsyncs the temporary (every file in it, for a directory). Idempotent.
  void sync();
  // sync()s if not yet done, renames the temporary over the final path (replacing an older one),
  // and fsyncs the parent directory.
  void commit();

 private:
  std::filesystem::path final_, temp_;
  bool synced_ = false, committed_ = false;
};

// Whole small files (JSON indexes, reports) written atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);

}  // namespace wsm
