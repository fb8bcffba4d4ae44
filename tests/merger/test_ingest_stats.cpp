// IngestStats (the daemon's counters and recent rates, for StatusReply): the rates count what a
// plain loop over the notes counts inside each window, and the windows stay bounded over a long
// run (before, the checkpoints' window was never pruned: one entry per checkpoint, for good).
#include <gtest/gtest.h>

#include <vector>

#include "merger/daemon/ingest_stats.h"

namespace wsm::merger {
namespace {

using Clock = IngestStats::Clock;
using std::chrono::milliseconds;

TEST(IngestStats, CountersAddUp) {
  IngestStats s;
  const auto t0 = Clock::now();
  s.note_bytes(t0, 100);
  s.note_bytes(t0, 23);
  s.note_checkpoint(t0);
  s.note_rejected();
  s.note_rejected();
  s.note_outputs(3);
  EXPECT_EQ(s.bytes_received(), 123u);
  EXPECT_EQ(s.checkpoints_received(), 1u);
  EXPECT_EQ(s.checkpoints_rejected(), 2u);
  EXPECT_EQ(s.outputs_written(), 3u);
}

TEST(IngestStats, RatesCountOnlyTheirWindow) {
  IngestStats s;
  const auto t0 = Clock::now();
  // A note every 700 ms for 2 minutes: bytes i+1 at t0 + 700 i ms, a checkpoint every 4th note.
  std::vector<std::pair<Clock::time_point, std::uint64_t>> bytes;
  std::vector<Clock::time_point> checkpoints;
  for (int i = 0; i < 172; ++i) {
    const auto t = t0 + milliseconds(700 * i);
    s.note_bytes(t, i + 1);
    bytes.emplace_back(t, i + 1);
    if (i % 4 == 0) {
      s.note_checkpoint(t);
      checkpoints.push_back(t);
    }
  }
  for (const auto now :
       {t0 + milliseconds(700 * 171), t0 + milliseconds(700 * 171 + 3000), t0 + std::chrono::minutes(5)}) {
    std::uint64_t in_5s = 0;
    for (const auto& [t, b] : bytes)
      if (now - t <= std::chrono::seconds(5)) in_5s += b;
    std::size_t in_minute = 0;
    for (const auto t : checkpoints)
      if (now - t <= std::chrono::minutes(1)) ++in_minute;
    EXPECT_DOUBLE_EQ(s.bytes_per_s(now), static_cast<double>(in_5s) / 5.0);
    EXPECT_DOUBLE_EQ(s.checkpoints_per_min(now), static_cast<double>(in_minute));
  }
  EXPECT_EQ(s.bytes_per_s(t0 + std::chrono::minutes(5)), 0.0);  // nothing in the last 5 s
  EXPECT_EQ(s.window_entries(), 0u);                            // and nothing held for it
}

TEST(IngestStats, WindowsStayBoundedOverALongRun) {
  // A checkpoint and a chunk every second for 30 days of fake time: at most a minute's
  // checkpoints and 5 s of chunks are held at any time.
  IngestStats s;
  const auto t0 = Clock::now();
  std::size_t most = 0;
  const int seconds = 30 * 24 * 3600;
  for (int i = 0; i < seconds; ++i) {
    const auto t = t0 + std::chrono::seconds(i);
    s.note_checkpoint(t);
    s.note_bytes(t, 1);
    most = std::max(most, s.window_entries());
  }
  EXPECT_EQ(s.checkpoints_received(), static_cast<std::uint64_t>(seconds));
  EXPECT_LE(most, 61u + 6u);  // 0..60 s old checkpoints, 0..5 s old chunks
  EXPECT_DOUBLE_EQ(s.checkpoints_per_min(t0 + std::chrono::seconds(seconds - 1)), 61.0);
}

}  // namespace
}  // namespace wsm::merger
