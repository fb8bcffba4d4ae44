#pragma once
// The daemon's window: per run, the recent checkpoints the emulations need and no more.
// Retention: for each emulation, the newest checkpoint at or before (newest - window) and
// everything after it; older checkpoints are dropped.
// Memory: RAM copies are kept within memory_budget (minus what extra_bytes reports: the running
// sums and the checkpoints being received), oldest spilled first. With a store directory, every checkpoint is also written there
// (HDF5, atomically) by a background writer (store_writer.h), so a restart rebuilds the window
// from disk; a RAM copy can be dropped once its file is persisted. Without one, the budget is a
// warning.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "merger/daemon/emulation.h"
#include "merger/daemon/store_writer.h"
#include "merger/daemon/stored_checkpoint.h"

namespace wsm::merger {

using Entry = std::shared_ptr<const StoredCheckpoint>;

struct StoreOptions {
  std::filesystem::path store_dir;        // empty: RAM only
  std::uint64_t memory_budget = 8ull << 30;
  std::uint64_t write_backlog = 1ull << 30;  // unwritten bytes past which ingest waits (backlogged())
  std::chrono::milliseconds write_retry{5000};  // a checkpoint the store could not write is tried again after this
};

class WindowStore {
 public:
  WindowStore(StoreOptions options, std::vector<Emulation> emulations);

  // Loads every persisted checkpoint of store_dir (temporaries ignored), then applies retention.
  void rebuild_from_disk();

  // Adds a complete checkpoint (RAM copy set). Queues it for the store writer when there is a
  // store, drops what left every window (returned, oldest first), spills over budget. Throws
  // wsm::Error when the step is not newer than the run's newest.
  std::vector<Entry> add(std::shared_ptr<StoredCheckpoint> c);

  // The store writer is behind by more than write_backlog bytes: stop granting credit.
  bool backlogged() const;
  std::uint64_t write_backlog_bytes() const { return writer_ ? writer_->backlog_bytes() : 0; }
  std::size_t failing_writes() const { return writer_ ? writer_->failing() : 0; }  // waiting to be tried again
  // Spills what became spillable since the last add (files persisted meanwhile).
  void poll() { spill(); }
  // Waits until every queued checkpoint is written (shutdown), then spills.
  void flush();
  // Test hook: only waits for the writer, so safe from another thread than the store's.
  void wait_written() const {
    if (writer_) writer_->flush();
  }
  // Bytes held elsewhere that count against memory_budget (running sums, partial checkpoints).
  void set_extra_bytes(std::function<std::uint64_t()> f) { extra_bytes_ = std::move(f); }

  bool contains(const std::string& run_id, std::int64_t step) const;
  std::int64_t newest_step(const std::string& run_id) const;  // -1 when the run is empty
  const std::vector<Entry>& entries(const std::string& run_id) const;  // oldest first
  std::vector<std::string> runs() const;
  std::uint64_t memory_bytes() const { return memory_bytes_; }
  // RAM that spilling cannot free now: the window's RAM copies (all of them without a store, else
  // those not yet persisted), and copies that left the window (dropped or spilled) while an output
  // still reads them.
  std::uint64_t pinned_bytes() const;
  const StoreOptions& options() const { return options_; }
  const std::vector<Emulation>& emulations() const { return emulations_; }

  // Whether the run's checkpoints reach back to the window's start on the emulation's axis:
  // window_covered (wsm/schedules/decay.h), the rule `wsm merge` warns by.
  bool covered(const std::string& run_id, const Emulation& e) const;

 private:
  std::vector<Entry> retain(const std::string& run_id);
  void retire(const Entry& e);          // its RAM copy leaves memory_bytes_ for retired_
  std::uint64_t retired_bytes() const;  // of those still alive
  void spill();
  std::filesystem::path file_for(const StoredCheckpoint& c) const;

  StoreOptions options_;
  std::vector<Emulation> emulations_;
  std::map<std::string, std::vector<Entry>> runs_;
  std::uint64_t memory_bytes_ = 0;
  // RAM copies that left the window while held elsewhere (an output reading them): still memory.
  mutable std::vector<std::weak_ptr<const StoredCheckpoint>> retired_;
  bool warned_budget_ = false;
  std::function<std::uint64_t()> extra_bytes_;
  std::unique_ptr<StoreWriter> writer_;  // last member: joined first, while the store is intact
};

std::int64_t position(const StoredCheckpoint& c, Axis axis);

}  // namespace wsm::merger
