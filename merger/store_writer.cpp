#include "merger/store_writer.h"

#include <spdlog/spdlog.h>

namespace wsm::merger {

StoreWriter::StoreWriter() : thread_([this] { loop(); }) {}

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

void StoreWriter::flush() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void StoreWriter::loop() {
  for (;;) {
    std::shared_ptr<const StoredCheckpoint> c;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued is written
      c = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    bool ok = false;
    if (c->lease->dropped) {
      spdlog::debug("store: run '{}' step {} left the window before it was written", c->run_id, c->step);
    } else {
      try {
        std::filesystem::create_directories(c->file.parent_path());
        persist(*c, c->file);
        c->lease->persisted = true;
        ok = true;
        spdlog::debug("store: wrote run '{}' step {} to {}", c->run_id, c->step, c->file.string());
      } catch (const std::exception& e) {
        spdlog::error("store: run '{}' step {} not persisted (kept in RAM only): {}", c->run_id, c->step, e.what());
      }
    }
    const auto bytes = c->nbytes();
    c.reset();  // before going idle: a dropped checkpoint's file goes with its last reference
    {
      std::lock_guard lock(mu_);
      backlog_ -= bytes;
      written_ += ok ? 1 : 0;
      busy_ = false;
    }
    idle_cv_.notify_all();
  }
}

}  // namespace wsm::merger
