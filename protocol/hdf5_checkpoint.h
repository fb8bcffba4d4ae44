#pragma once
// The HDF5 encoding of a checkpoint (docs/checkpoint-format.md, "HDF5"):
//   /                      attributes wsm.format_version=1, wsm.step, wsm.tokens, wsm.lr, wsm.run_id,
//                          and every extra metadata key as a UTF-8 string attribute
//   /tensors/<escaped name> one dataset per tensor, in creation order ('%' -> %25, '/' -> %2F)
// f16 uses the IEEE half type h5py reads as float16; bf16 is a uint16 dataset with the attribute
// wsm_dtype="bf16"; bool is h5py's enum {FALSE, TRUE}. Files without wsm.format_version (written by
// h5py or others) are read as "every dataset, named by its path".
//
// libhdf5 here is the serial, non-thread-safe build: every call made by this part holds one
// process-wide lock, so readers and writers may be used from several threads.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "protocol/checkpoint.h"

namespace wsm {

inline constexpr int kHdf5FormatVersion = 1;

std::unique_ptr<CheckpointReader> open_hdf5(const std::filesystem::path& path);
std::unique_ptr<CheckpointWriter> create_hdf5(const std::filesystem::path& path, const CheckpointMeta& meta,
                                              const std::vector<TensorInfo>& tensors, const WriteOptions& options);

// Tensor name <-> dataset name under /tensors; the mapping is exact in both directions.
std::string hdf5_escape_name(const std::string& name);
std::string hdf5_unescape_name(const std::string& dataset_name);

// True when the file starts with the HDF5 signature (at offset 0, the common case).
bool looks_like_hdf5(const std::filesystem::path& path);

}  // namespace wsm
