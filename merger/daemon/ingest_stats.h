#pragma once
// What the daemon has taken in, for StatusReply: bytes and checkpoints received, checkpoints
// rejected, outputs written, and the recent rates (bytes over the last 5 s, checkpoints over the
// last minute). The rate windows hold only what is inside them: entries older than the window go at
// every note and every read, so a daemon running for months holds a bounded number.
#include <chrono>
#include <cstdint>
#include <deque>
#include <utility>

namespace wsm::merger {

class IngestStats {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kBytesWindow = std::chrono::seconds(5);
  static constexpr auto kCheckpointsWindow = std::chrono::minutes(1);

  void note_bytes(Clock::time_point now, std::uint64_t bytes);  // a chunk's payload
  void note_checkpoint(Clock::time_point now);                  // one entered the window
  void note_rejected() { ++checkpoints_rejected_; }
  void note_outputs(std::uint64_t n) { outputs_written_ += n; }

  std::uint64_t bytes_received() const { return bytes_received_; }
  std::uint64_t checkpoints_received() const { return checkpoints_received_; }
  std::uint64_t checkpoints_rejected() const { return checkpoints_rejected_; }
  std::uint64_t outputs_written() const { return outputs_written_; }
  // Pruning on read keeps an idle daemon's windows empty (hence mutable members).
  double bytes_per_s(Clock::time_point now) const;
  double checkpoints_per_min(Clock::time_point now) const;
  // Entries held in the two windows (tests: they stay bounded).
  std::size_t window_entries() const { return recent_bytes_.size() + recent_checkpoints_.size(); }

 private:
  void prune(Clock::time_point now) const;

  std::uint64_t bytes_received_ = 0, checkpoints_received_ = 0, checkpoints_rejected_ = 0, outputs_written_ = 0;
  mutable std::deque<std::pair<Clock::time_point, std::uint64_t>> recent_bytes_;  // oldest first
  mutable std::deque<Clock::time_point> recent_checkpoints_;                      // oldest first
};

}  // namespace wsm::merger
