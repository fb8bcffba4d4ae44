#pragma once
// A checkpoint held by the daemon's window: immutable once complete, shared by the window and by
// any emission reading it, so dropping or spilling never pulls bytes from under a running merge.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "protocol/checkpoint.h"

namespace wsm::merger {

struct TensorBuffer {
  std::unique_ptr<std::byte[]> bytes;  // uninitialised on allocation: every byte is received
  std::uint64_t size = 0;
  std::span<std::byte> span() { return {bytes.get(), size}; }
  std::span<const std::byte> span() const { return {bytes.get(), size}; }
};
TensorBuffer make_buffer(std::uint64_t size);

struct StoredCheckpoint {
  std::string run_id;
  std::int64_t step = 0;
  std::int64_t tokens = 0;
  double lr = 0;
  std::vector<TensorInfo> tensors;
  std::vector<TensorBuffer> data;   // one per tensor; empty when only on disk
  std::filesystem::path file;       // persisted copy in the store, empty when none

  bool in_memory() const { return !data.empty(); }
  std::uint64_t nbytes() const;
  CheckpointMeta meta() const;
};

// The same checkpoint without its RAM copy (it must have a file).
std::shared_ptr<const StoredCheckpoint> without_memory(const StoredCheckpoint& c);

// A CheckpointReader over a stored checkpoint (RAM copy, else its file), so the shared merge
// engine (merge_engine.h) reads the window like any checkpoint.
std::unique_ptr<CheckpointReader> open_stored(std::shared_ptr<const StoredCheckpoint> c);

// Writes c (from RAM) to path atomically as HDF5, with step/tokens/lr/run_id metadata.
void persist(const StoredCheckpoint& c, const std::filesystem::path& path);
// Reads the metadata and manifest of a persisted checkpoint (no tensor bytes).
std::shared_ptr<const StoredCheckpoint> load_stored(const std::filesystem::path& path);

}  // namespace wsm::merger
