#include "merger/daemon/store_writer.h"

#include <spdlog/spdlog.h>

namespace wsm::merger {

StoreWriter::StoreWriter(std::chrono::milliseconds retry_delay)
    : retry_delay_(retry_delay), thread_([this] { loop(); }) {}

StoreWriter::~StoreWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StoreWriter::submit(std::shared_ptr<const StoredCheckpoint> c) {
  {
    std::lock_guard lock(mu_);
    backlog_ += c->nbytes();
    queue_.push_back(std::move(c));
  }
  cv_.notify_one();
}

std::uint64_t StoreWriter::backlog_bytes() const {
  std::lock_guard lock(mu_);
  return backlog_;
}

std::uint64_t StoreWriter::written() const {
  std::lock_guard lock(mu_);
  return written_;
}

std::size_t StoreWriter::failing() const {
  std::lock_guard lock(mu_);
  return retry_.size();
}

void StoreWriter::flush() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

bool StoreWriter::write(const StoredCheckpoint& c) {
  if (c.lease->dropped) {
    spdlog::debug("store: run '{}' step {} left the window before it was written", c.run_id, c.step);
    return true;
  }
  try {
    std::filesystem::create_directories(c.file.parent_path());
    persist(c, c.file);
    c.lease->persisted = true;
    spdlog::debug("store: wrote run '{}' step {} to {}", c.run_id, c.step, c.file.string());
    return true;
  } catch (const std::exception& e) {
    spdlog::error("store: run '{}' step {} not persisted (kept in RAM, tried again in {} ms): {}", c.run_id, c.step,
                  retry_delay_.count(), e.what());
    return false;
  }
}

void StoreWriter::loop() {
  for (;;) {
    std::shared_ptr<const StoredCheckpoint> c;
    {
      std::unique_lock lock(mu_);
      const auto ready = [&] { return stopping_ || !queue_.empty(); };
      if (retry_.empty()) cv_.wait(lock, ready);
      else cv_.wait_until(lock, retry_at_, ready);
      // Failed writes go back in the queue when their delay is over, and once more at a clean stop.
      if (!retry_.empty() && (stopping_ || std::chrono::steady_clock::now() >= retry_at_)) {
        for (auto& r : retry_) backlog_ += r->nbytes();
        queue_.insert(queue_.end(), std::make_move_iterator(retry_.begin()), std::make_move_iterator(retry_.end()));
        retry_.clear();
      }
      if (queue_.empty()) {
        if (stopping_) return;  // everything queued is written
        continue;
      }
      c = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    const bool ok = write(*c);
    const bool persisted = c->lease->persisted;
    const auto bytes = c->nbytes();
    if (!ok) {
      std::lock_guard lock(mu_);
      if (!stopping_) {
        if (retry_.empty()) retry_at_ = std::chrono::steady_clock::now() + retry_delay_;
        retry_.push_back(c);
      }
    }
    c.reset();  // before going idle: a dropped checkpoint's file goes with its last reference
    {
      std::lock_guard lock(mu_);
      backlog_ -= bytes;
      written_ += persisted ? 1 : 0;
      busy_ = false;
    }
    idle_cv_.notify_all();
  }
}

}  // namespace wsm::merger
