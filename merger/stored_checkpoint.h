#pragma once
// A checkpoint held by the daemon's window: immutable once complete, shared by the window and by
// any emission reading it, so dropping or spilling never pulls bytes from under a running merge.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "protocol/checkpoint.h"

namespace wsm::merger {

class BufferPool;

struct TensorBuffer {
  std::unique_ptr<std::byte[]> bytes;  // uninitialised on allocation: every byte is received
  std::uint64_t size = 0;
  std::uint64_t capacity = 0;
  std::weak_ptr<BufferPool> pool;      // where the bytes go when this buffer is dropped

  TensorBuffer() = default;
  TensorBuffer(TensorBuffer&&) noexcept = default;
  TensorBuffer& operator=(TensorBuffer&&) noexcept = default;
  ~TensorBuffer();
  std::span<std::byte> span() { return {bytes.get(), size}; }
  std::span<const std::byte> span() const { return {bytes.get(), size}; }
};

// Recycles the buffers of checkpoints that left the window for the next ones to arrive: a fresh
// allocation page-faults on every byte it receives, a recycled one does not. Holds at most
// max_bytes of idle buffers.
class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  explicit BufferPool(std::uint64_t max_bytes) : max_bytes_(max_bytes) {}
  TensorBuffer take(std::uint64_t size);
  void give(std::unique_ptr<std::byte[]> bytes, std::uint64_t capacity);
  std::uint64_t idle_bytes() const;

 private:
  mutable std::mutex mu_;
  std::multimap<std::uint64_t, std::unique_ptr<std::byte[]>> free_;  // by capacity
  std::uint64_t idle_ = 0, max_bytes_;
};

// A buffer of `size` bytes, from `pool` when given.
TensorBuffer make_buffer(std::uint64_t size, BufferPool* pool = nullptr);

// A file in the store, deleted when the window has dropped it and no reader (a queued or running
// output) still holds it; kept otherwise, so a restart finds it.
// Written in the background (store_writer.h): the file exists once `persisted`.
struct FileLease {
  std::filesystem::path path;
  std::atomic<bool> dropped{false};
  std::atomic<bool> persisted{false};
  explicit FileLease(std::filesystem::path p) : path(std::move(p)) {}
  ~FileLease();
};

struct StoredCheckpoint {
  std::string run_id;
  std::int64_t step = 0;
  std::int64_t tokens = 0;
  double lr = 0;
  std::vector<TensorInfo> tensors;
  std::vector<TensorBuffer> data;   // one per tensor; empty when only on disk
  std::filesystem::path file;       // persisted copy in the store, empty when none
  std::shared_ptr<FileLease> lease; // of `file`

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
