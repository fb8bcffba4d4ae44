#pragma once
// The checkpoint data model: an ordered set of named tensors plus metadata, and the streaming
// reader/writer interfaces every on-disk format implements (HDF5, safetensors, sharded sets).
//
// Tensor bytes are always raw little-endian element data in C (row-major) order. Readers never
// hold a whole checkpoint; writers take tensor bytes in any order and chunk size.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "wsm/core/dtype.h"
#include "wsm/core/error.h"

namespace wsm {

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;

  // Both throw wsm::Error naming the tensor when the count or the byte size overflows 64 bits
  // (a [2^62] f64 tensor is refused, never taken for 0 bytes).
  std::uint64_t numel() const;
  std::uint64_t nbytes() const;
  bool operator==(const TensorInfo&) const = default;
};

struct CheckpointMeta {
  std::optional<std::int64_t> step;
  std::optional<std::int64_t> tokens;
  std::optional<double> lr;
  std::string run_id;
  std::map<std::string, std::string> extra;  // free key/values: provenance, schedule, ...
  bool operator==(const CheckpointMeta&) const = default;
};

// Streaming, random-access reader. Memory stays bounded by what the caller asks for.
class CheckpointReader {
 public:
  virtual ~CheckpointReader() = default;
  virtual const std::vector<TensorInfo>& tensors() const = 0;
  virtual const CheckpointMeta& meta() const = 0;
  virtual std::string format() const = 0;  // "hdf5", "safetensors", "safetensors-sharded"
  virtual const std::filesystem::path& path() const = 0;
  // Copies bytes [offset, offset + dst.size()) of tensor `name` into dst. Throws wsm::Error
  // naming file and tensor on a bad name, an out-of-range request or a short read.
  virtual void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) = 0;

  // The tensor's bytes in place, when the format keeps them contiguous and uncompressed in a file
  // it maps (safetensors, contiguous HDF5 datasets): the merge engine then reads without copying.
  // Empty when bytes must come through read(). Valid while the reader lives.
  virtual std::optional<std::span<const std::byte>> mapped(const std::string& /*name*/) { return std::nullopt; }

  const TensorInfo& info(const std::string& name) const;  // throws when absent
};

// Opens by content/extension: *.h5/*.hdf5, *.safetensors, *.safetensors.index.json, or a directory
// holding either an index or *.safetensors shards (a Hugging Face Trainer checkpoint-N folder
// among them). A checkpoint that records no step gets the one its layout gives (trainer_folder.h),
// its source under meta().extra["wsm.step_source"]. torch.save files are refused by name
// (torch_format.h).
std::unique_ptr<CheckpointReader> open_checkpoint(const std::filesystem::path& path);

struct WriteOptions {
  std::uint64_t shard_bytes = 0;  // safetensors only: > 0 writes a sharded set into a directory
  int compression = 0;            // HDF5 only: deflate level 0..9 (values never change)
  std::uint64_t chunk_bytes = 0;  // HDF5 only: > 0 chunks datasets (required for compression)
  // HDF5 only: datasets contiguous and allocated when created, no timestamps, the file closed at
  // once, so its layout() is known and the same inputs give the same bytes (laid-out outputs).
  bool preallocate = false;
  // Sharded sets only: a Hugging Face model directory whose config, generation config and
  // tokenizer files are copied into the output (wsm/formats/hf_directory.h).
  std::filesystem::path hf_template;
};

// Where an output's tensor bytes lie: one entry per file, each tensor's first byte as an absolute
// file offset. Lets other processes fill the output with pwrite (wsm/formats/range_file_writer.h).
struct LaidOutFile {
  std::filesystem::path path;
  std::map<std::string, std::uint64_t> offsets;
};

// Writer for a manifest declared up front. Data goes to a temporary name; commit() fsyncs and
// renames it into place. A writer destroyed without commit() removes its temporary files, so an
// interrupted write never leaves a file that looks complete.
class CheckpointWriter {
 public:
  virtual ~CheckpointWriter() = default;
  virtual void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) = 0;
  // Everything but the rename: checks every byte was written, flushes, fsyncs the temporary.
  // Idempotent. Once it has succeeded, commit() can fail only in the rename itself.
  virtual void prepare() = 0;
  virtual void commit() = 0;  // prepare()s if not yet done, then renames into place
  // The files (under their temporary names) and offsets of every tensor's bytes, for formats laid
  // out up front (safetensors, sharded sets, preallocated HDF5); empty otherwise.
  virtual std::vector<LaidOutFile> layout() const { return {}; }
};

// Commits several outputs as one: all are prepared first, so a failure there (a short write, a full
// disk, a failed fsync) leaves none of them in place; only then are they renamed, one by one.
void commit_all(std::span<CheckpointWriter* const> writers);

// Format chosen by extension: .h5/.hdf5 -> HDF5; .safetensors -> safetensors; a path with no
// extension or WriteOptions::shard_bytes > 0 -> a sharded safetensors directory.
std::unique_ptr<CheckpointWriter> create_checkpoint(const std::filesystem::path& path,
                                                    const CheckpointMeta& meta,
                                                    const std::vector<TensorInfo>& tensors,
                                                    const WriteOptions& options = {});

// The same writers without the completeness check, for outputs filled by other processes through
// layout(): each filler checks its own ranges (RangeFileWriter); the caller prepares and commits.
// Refuses formats with no layout (compressed or non-preallocated HDF5).
std::unique_ptr<CheckpointWriter> create_laid_out_checkpoint(const std::filesystem::path& path,
                                                             const CheckpointMeta& meta,
                                                             const std::vector<TensorInfo>& tensors,
                                                             const WriteOptions& options);

// Whole-checkpoint convenience for small models (tests, the trainer): loads everything in memory.
struct Tensor {
  TensorInfo info;
  std::vector<std::byte> data;
};
struct Checkpoint {
  CheckpointMeta meta;
  std::vector<Tensor> tensors;
};
Checkpoint load_checkpoint(const std::filesystem::path& path);
void save_checkpoint(const std::filesystem::path& path, const Checkpoint& ckpt, const WriteOptions& options = {});

}  // namespace wsm
