#pragma once
// The client's buffer machinery (client.cpp streams what lives here): a checkpoint's snapshot in
// one contiguous, recycled buffer; the copy into it shared between the send_checkpoint caller and
// the sender thread; and the bound on chunk bytes handed to ZeroMQ but not yet written. Internal
// to protocol/client.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "wsm/client/client.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/formats/tensor_slice.h"

namespace wsm::client_detail {

struct Buffer {
  std::unique_ptr<std::byte[]> bytes;
  std::size_t capacity = 0;
};

// Recycles snapshot buffers: a fresh allocation would page-fault on every byte, a reused one does not.
class BufferPool {
 public:
  explicit BufferPool(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  Buffer take(std::size_t size);  // a free buffer of at least size bytes, or a new one
  void give(Buffer b);            // kept for reuse while the pool holds at most max_bytes

 private:
  std::mutex mu_;  // guards free_ and held_
  std::deque<Buffer> free_;
  std::size_t held_ = 0, max_bytes_;
};

struct Snapshot {
  std::int64_t step = 0, tokens = 0;
  double lr = 0;
  std::vector<TensorInfo> manifest;  // sharded: named by slice entry, shaped as the block
  std::vector<TensorSlice> slices;   // sharded: one per manifest tensor; empty otherwise
  std::vector<std::string> names;    // sharded: the global tensors' names
  std::vector<std::size_t> offsets;  // of each tensor in buffer
  std::size_t total = 0;
  Buffer buffer;
  std::weak_ptr<BufferPool> pool;
  std::shared_ptr<const void> owner;  // send_checkpoint_owned: the caller's bytes, in place
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::vector<const std::byte*> in_place;
  ~Snapshot() {
    if (auto p = pool.lock()) p->give(std::move(buffer));
  }
  const std::byte* data(std::size_t i) const { return owner ? in_place[i] : buffer.bytes.get() + offsets[i]; }
};

// The snapshot of one send_checkpoint call, its tensors laid out (the bytes are copied later).
// Throws wsm::Error when a tensor's bytes do not match its dtype and shape, or a slice is invalid.
std::shared_ptr<Snapshot> describe(std::int64_t step, std::int64_t tokens, double lr,
                                   std::span<const TensorView> tensors, const ClientOptions& opt);

// Chunk bytes handed to ZeroMQ that its I/O thread has not yet written to the socket.
inline constexpr std::size_t kBytesAhead = 8 << 20;
struct QueuedFrames {
  std::mutex mu;  // guards bytes

  std::condition_variable cv;
  std::size_t bytes = 0;
  void add(std::size_t n) {
    std::lock_guard lock(mu);
    bytes += n;
  }
  void done(std::size_t n) {
    {
      std::lock_guard lock(mu);
      bytes -= n;
    }
    cv.notify_all();
  }
  // Waits until n more bytes fit (or nothing is queued); false when ZeroMQ wrote nothing until `until`.
  bool wait_for_room(std::size_t n, std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(mu);
    return cv.wait_until(lock, until, [&] { return bytes == 0 || bytes + n <= kBytesAhead; });
  }
};

// One snapshot copy, shared by the send_checkpoint caller and the sender thread: each takes the
// next block until none is left. Blocks are what makes sharing possible; their size keeps the
// handoff cost small next to the copy.
class SnapshotCopy {
 public:
  static constexpr std::size_t kBlock = 2 << 20;
  // Worth sharing only when it has more than one block.
  bool shareable() const { return blocks_.size() > 1; }
  void add(std::byte* dst, const std::byte* src, std::size_t n);  // before anyone copies
  void help();                                                    // copies blocks until none is left to take
  void wait_done();  // returns once every block is copied, by whoever took it

 private:
  struct Block {
    std::byte* dst;
    const std::byte* src;
    std::size_t n;
  };
  std::vector<Block> blocks_;
  std::atomic<std::size_t> next_{0}, done_{0};
};

}  // namespace wsm::client_detail
