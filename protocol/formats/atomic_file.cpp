#include "wsm/formats/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include <spdlog/spdlog.h>

#include "wsm/core/error.h"

namespace fs = std::filesystem;

namespace wsm {

namespace {

std::atomic<unsigned> g_counter{0};

// Closes the descriptor on every path out of fsync_path.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void fsync_path(const fs::path& p, bool directory) {
  Fd f{::open(p.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC)};
  if (f.fd < 0) throw Error(p.string() + ": cannot open for fsync: " + std::strerror(errno));
  if (::fsync(f.fd) != 0) throw Error(p.string() + ": fsync failed: " + std::strerror(errno));
}

fs::path parent_or_dot(const fs::path& p) {
  fs::path parent = p.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

}  // namespace

AtomicFile::AtomicFile(fs::path final_path) : final_(std::move(final_path)) {
  if (final_.empty()) throw Error("AtomicFile: empty output path");
  if (!final_.has_filename()) final_ = final_.parent_path();  // "out/" names the directory "out"
  temp_ = final_;
  temp_ += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(g_counter.fetch_add(1));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);  // never throws from a destructor; a leftover temp is clearly named
  if (ec) spdlog::warn("{}: could not remove temporary: {}", temp_.string(), ec.message());
}

void AtomicFile::sync() {
  if (synced_) return;
  if (committed_) throw Error(final_.string() + ": already committed");
  std::error_code ec;
  const auto st = fs::symlink_status(temp_, ec);
  if (ec || !fs::exists(st)) throw Error(final_.string() + ": nothing was written to " + temp_.string());
  const bool is_dir = fs::is_directory(st);
  if (is_dir) {
    for (const auto& entry : fs::recursive_directory_iterator(temp_)) {
      if (entry.is_regular_file()) fsync_path(entry.path(), false);
      else if (entry.is_directory()) fsync_path(entry.path(), true);
    }
  }
  fsync_path(temp_, is_dir);
  synced_ = true;
}

void AtomicFile::commit() {
  if (committed_) throw Error(final_.string() + ": already committed");
  sync();
  std::error_code ec;
  const bool is_dir = fs::is_directory(fs::symlink_status(temp_, ec));

  // rename(2) replaces a file atomically, but not a non-empty directory: move the old one aside
  // first, then drop it once the new one is in place.
  fs::path old;
  if (is_dir && fs::is_directory(fs::symlink_status(final_, ec))) {
    old = final_;
    old += ".old-" + std::to_string(::getpid()) + "-" + std::to_string(g_counter.fetch_add(1));
    if (::rename(final_.c_str(), old.c_str()) != 0)
      throw Error(final_.string() + ": cannot move the old directory aside: " + std::strerror(errno));
  }
  if (::rename(temp_.c_str(), final_.c_str()) != 0) {
    const int err = errno;
    if (!old.empty()) ::rename(old.c_str(), final_.c_str());
    throw Error(final_.string() + ": cannot rename " + temp_.filename().string() + " into place: " +
                std::strerror(err));
  }
  committed_ = true;
  fsync_path(parent_or_dot(final_), true);
  if (!old.empty()) {
    fs::remove_all(old, ec);
    if (ec) spdlog::warn("{}: could not remove the replaced directory: {}", old.string(), ec.message());
  }
}

void write_file_atomic(const fs::path& path, std::string_view content) {
  AtomicFile out(path);
  {
    Fd f{::open(out.temp_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (f.fd < 0) throw Error(out.temp_path().string() + ": cannot create: " + std::strerror(errno));
    const char* p = content.data();
    std::size_t left = content.size();
    while (left > 0) {
      const ssize_t n = ::write(f.fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw Error(out.temp_path().string() + ": write failed: " + std::strerror(errno));
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  }
  out.commit();
}

}  // namespace wsm
