#pragma once
// Persists the window's checkpoints to --store on a background thread, so writing a large
// checkpoint never pauses the thread that receives messages. FIFO; each file is written under a
// temporary name and renamed (persist(), wsm/formats/atomic_file.h), and only then marked persisted
// (FileLease::persisted): only persisted checkpoints may drop their RAM copy. A checkpoint the
// window dropped before its turn is skipped. The caller bounds the backlog (backlog_bytes()) by
// withholding credit, so memory never grows without bound when the disk is slow. A checkpoint
// that cannot be written (a full disk) stays in RAM and is tried again every retry_delay until it
// is written or leaves the window.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "merger/daemon/stored_checkpoint.h"

namespace wsm::merger {

class StoreWriter {
 public:
  explicit StoreWriter(std::chrono::milliseconds retry_delay = std::chrono::seconds(5));
  ~StoreWriter();  // writes what is queued (a clean stop keeps the window), then joins
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // c->file and c->lease must be set.
  void submit(std::shared_ptr<const StoredCheckpoint> c);
  std::uint64_t backlog_bytes() const;  // queued or being written
  std::uint64_t written() const;        // checkpoints persisted since start
  std::size_t failing() const;          // checkpoints waiting to be tried again
  void flush();                         // until nothing is queued or being written (retries aside)

 private:
  void loop();
  bool write(const StoredCheckpoint& c);  // true when persisted (or no longer needed)

  // Lock discipline: mu_ guards every member below up to thread_ (the queues, the counters and the
  // flags); the writer thread writes files without holding it.
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<const StoredCheckpoint>> queue_;
  std::deque<std::shared_ptr<const StoredCheckpoint>> retry_;  // failed; queued again at retry_at_
  std::chrono::milliseconds retry_delay_;
  std::chrono::steady_clock::time_point retry_at_;
  std::uint64_t backlog_ = 0, written_ = 0;
  bool busy_ = false, stopping_ = false;
  std::jthread thread_;
};

}  // namespace wsm::merger
