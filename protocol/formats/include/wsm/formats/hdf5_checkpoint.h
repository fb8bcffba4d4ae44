#pragma once
// The HDF5 encoding of a checkpoint (docs/checkpoint-format.md, "HDF5"):
//   /                      attributes wsm.format_version=1, wsm.step, wsm.tokens, wsm.lr, wsm.run_id,
//                          and every extra metadata key as a UTF-8 string attribute
//   /tensors/<escaped name> one dataset per tensor, in creation order ('%' -> %25, '/' -> %2F)
// f16 uses the IEEE half type h5py reads as float16; bf16 is a uint16 dataset with the attribute
// wsm_dtype="bf16"; bool is h5py's enum {FALSE, TRUE}. Files without wsm.format_version (written by
// h5py or others) are read as "every dataset, named by its path".
//
// Reading: files are untrusted, and libhdf5 1.10 crashes or hangs on some corrupt ones, so wsm's
// own process never parses them. A helper process (child_worker.h), forked once and shared by every
// reader alive at the time, opens each file with libhdf5 and sends back a manifest (names, dtypes,
// shapes, attributes, and where each contiguous dataset's bytes lie); tensor bytes are then read
// from a read-only mapping of the file, and only datasets stored otherwise (chunked, compressed,
// compact, fill value, bool) are read through the helper. A helper that crashes, hangs past the
// time limit or sends garbage is killed and reaped, and that request ends in a one-line wsm::Error
// naming its file (the limit scales with the work: the file's size, the bytes read); the next
// request starts a fresh helper, which reopens the files of the other
// readers as they need it. External storage and virtual datasets (data in other files) are
// refused. The helper runs while some reader needs it (or a lease holds it) and is killed with the
// last one: no process outlives them. Requests to it are serialised (libhdf5 is serialised anyway).
//
// Writing: every libhdf5 call made by this part holds one process-wide lock, so writers may be
// used from several threads whatever the libhdf5 build. Before writing, the output's
// filesystem must have room for every declared byte (free_space.h).
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

inline constexpr int kHdf5FormatVersion = 1;

std::unique_ptr<CheckpointReader> open_hdf5(const std::filesystem::path& path);
std::unique_ptr<CheckpointWriter> create_hdf5(const std::filesystem::path& path, const CheckpointMeta& meta,
                                              const std::vector<TensorInfo>& tensors, const WriteOptions& options);

// Keeps the shared helper process running while held, so that readers opened one after another
// (a long-lived process reading many files) share one helper instead of forking one each.
class Hdf5HelperLease {
 public:
  explicit Hdf5HelperLease(std::shared_ptr<void> helper) : helper_(std::move(helper)) {}

 private:
  std::shared_ptr<void> helper_;
};
Hdf5HelperLease hold_hdf5_helper();

// Test hook (tests and fuzz targets lower it): caps the helper's time limit per request, which is
// otherwise 10 s plus 1 s per 5 MB (at most 10 min) the request may touch (the file, to open it; the bytes asked
// for, to read them), so a hostile small file fails in seconds (protocol/formats/hdf5_helper.h).
void set_hdf5_helper_timeout(std::chrono::milliseconds limit);

// Tensor name <-> dataset name under /tensors; the mapping is exact in both directions.
std::string hdf5_escape_name(const std::string& name);
std::string hdf5_unescape_name(const std::string& dataset_name);

// True when the file starts with the HDF5 signature (at offset 0, the common case).
bool looks_like_hdf5(const std::filesystem::path& path);

}  // namespace wsm
