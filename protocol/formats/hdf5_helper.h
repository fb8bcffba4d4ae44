#pragma once
// wsm's side of the HDF5 helper process (see wsm/formats/hdf5_checkpoint.h): the one helper every
// reader alive at once shares, one file's requests to it, and the manifest it answers, checked as
// untrusted input. Each request's time limit scales with the work it asks for (helper_timeout).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol/formats/child_worker.h"
#include "protocol/formats/hdf5_helper_protocol.h"
#include "wsm/core/error.h"
#include "wsm/formats/checkpoint.h"

namespace wsm::hdf5 {

// One tensor as the helper process describes it.
struct Hdf5Entry {
  TensorInfo info;
  std::optional<std::uint64_t> offset;  // where its bytes lie in the file as-is (contiguous, unfiltered)
};

// The limit for a request that may touch `work_bytes` (the file, for a manifest; the bytes asked
// for, for a read): 10 s plus 1 s per 5 MB, at most 10 minutes, so a hostile 2 KB file that hangs
// libhdf5 fails in 10 s (it waited a minute) while a large file gets the time its size needs;
// set_hdf5_helper_timeout caps it.
std::chrono::milliseconds helper_timeout(std::uint64_t work_bytes);

inline std::uint64_t size_of(const std::filesystem::path& path) {  // 0 when it cannot be read
  std::error_code ec;
  const auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// The helper process every reader alive at once shares (and leases hold): started by the first
// request, restarted after a death, killed when the last holder is gone.
class Hdf5Helper {
 public:
  Hdf5Helper();
  ChildWorker& worker() { return worker_; }
  std::uint64_t new_file_id() { return ++last_id_; }

 private:
  ChildWorker worker_;
  std::atomic<std::uint64_t> last_id_{0};
};

std::shared_ptr<Hdf5Helper> shared_hdf5_helper();

// One file as the shared helper holds it; forgotten there when this goes.
class HelperFile {
 public:
  explicit HelperFile(std::filesystem::path path)
      : helper_(shared_hdf5_helper()),
        id_(helper_->new_file_id()),
        path_(std::move(path)),
        file_bytes_(size_of(path_)) {}
  ~HelperFile() {
    if (!helper_->worker().running()) return;  // the helper that held it is gone; don't start one
    try {
      call('C', 0, 0, 0, 0);
    } catch (const Error&) {}
  }
  HelperFile(const HelperFile&) = delete;
  HelperFile& operator=(const HelperFile&) = delete;

  std::string manifest() { return call('O', 0, 0, 0, kMaxManifestBytes); }
  std::string elements(std::uint64_t i, std::uint64_t e0, std::uint64_t e1, std::uint64_t bytes) {
    return call('R', i, e0, e1, bytes);
  }

 private:
  std::string call(char kind, std::uint64_t i, std::uint64_t e0, std::uint64_t e1, std::uint64_t max_reply) {
    const std::string req = encode({kind, {id_, i, e0, e1}, kind == 'C' ? std::string() : path_.string()});
    const std::uint64_t work = kind == 'O' ? file_bytes_ : kind == 'R' ? max_reply : 0;
    return helper_->worker().call(path_.string(), req, helper_timeout(work), max_reply);
  }

  std::shared_ptr<Hdf5Helper> helper_;
  std::uint64_t id_;
  std::filesystem::path path_;
  std::uint64_t file_bytes_;  // what opening it may have to read: scales the manifest's time limit
};

// Parses the helper's manifest, trusting nothing in it: names, dtypes, shapes and offsets are
// checked as if they came from the file itself.
std::vector<Hdf5Entry> parse_manifest(const std::string& text, const std::string& where,
                                      std::map<std::string, std::string>& extra);

}  // namespace wsm::hdf5
