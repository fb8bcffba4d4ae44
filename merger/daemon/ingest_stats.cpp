#include "merger/daemon/ingest_stats.h"

namespace wsm::merger {

void IngestStats::prune(Clock::time_point now) const {
  while (!recent_bytes_.empty() && now - recent_bytes_.front().first > kBytesWindow) recent_bytes_.pop_front();
  while (!recent_checkpoints_.empty() && now - recent_checkpoints_.front() > kCheckpointsWindow)
    recent_checkpoints_.pop_front();
}

void IngestStats::note_bytes(Clock::time_point now, std::uint64_t bytes) {
  bytes_received_ += bytes;
  recent_bytes_.emplace_back(now, bytes);
  prune(now);
}

void IngestStats::note_checkpoint(Clock::time_point now) {
  ++checkpoints_received_;
  recent_checkpoints_.push_back(now);
  prune(now);
}

double IngestStats::bytes_per_s(Clock::time_point now) const {
  prune(now);
  std::uint64_t recent = 0;
  for (const auto& [t, b] : recent_bytes_)
    if (now - t <= kBytesWindow) recent += b;
  return static_cast<double>(recent) / std::chrono::duration<double>(kBytesWindow).count();
}

double IngestStats::checkpoints_per_min(Clock::time_point now) const {
  prune(now);
  std::size_t n = 0;
  for (const auto& t : recent_checkpoints_)
    if (now - t <= kCheckpointsWindow) ++n;
  return static_cast<double>(n);
}

}  // namespace wsm::merger
