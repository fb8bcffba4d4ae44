#pragma once
// Persists the window's checkpoints to --store on a background thread, so writing a large
// checkpoint never pauses the thread that receives messages. FIFO; each file is written under a
// temporary name and renamed (persist(), protocol/atomic_file.h), and only then marked persisted
// (FileLease::persisted): only persisted checkpoints may drop their RAM copy. A checkpoint the
// window dropped before its turn is skipped. The caller bounds the backlog (backlog_bytes()) by
// withholding credit, so memory never grows without bound when the disk is slow.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "merger/stored_checkpoint.h"

namespace wsm::merger {

class StoreWriter {
 public:
  StoreWriter();
  ~StoreWriter();  // writes what is queued (a clean stop keeps the window), then joins
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // c->file and c->lease must be set.
  void submit(std::shared_ptr<const StoredCheckpoint> c);
  std::uint64_t backlog_bytes() const;  // queued or being written
  std::uint64_t written() const;        // checkpoints persisted since start
  void flush();                         // until nothing is queued or being written

 private:
  void loop();

  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<const StoredCheckpoint>> queue_;
  std::uint64_t backlog_ = 0, written_ = 0;
  bool busy_ = false, stopping_ = false;
  std::thread thread_;
};

}  // namespace wsm::merger
