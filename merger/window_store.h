#pragma once
// The daemon's window: per run, the recent checkpoints the emulations need and no more.
// Retention: for each emulation, the newest checkpoint at or before (newest - window) (the anchor
// that proves the window is covered) and everything after it; older checkpoints are dropped.
// Memory: RAM copies are kept within memory_budget, oldest spilled first. With a store directory,
// every checkpoint is also written there (HDF5, atomically), so a restart rebuilds the window from
// disk and a RAM copy can be dropped at any time; without one, the budget is a warning.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "merger/emulation.h"
#include "merger/stored_checkpoint.h"

namespace wsm::merger {

using Entry = std::shared_ptr<const StoredCheckpoint>;

struct StoreOptions {
  std::filesystem::path store_dir;        // empty: RAM only
  std::uint64_t memory_budget = 8ull << 30;
};

class WindowStore {
 public:
  WindowStore(StoreOptions options, std::vector<Emulation> emulations);

  // Loads every persisted checkpoint of store_dir (temporaries ignored), then applies retention.
  void rebuild_from_disk();

  // Adds a complete checkpoint (RAM copy set). Persists it when there is a store, drops what left
  // every window, spills over budget. Throws wsm::Error when the step is not newer than the run's newest.
  void add(std::shared_ptr<StoredCheckpoint> c);

  bool contains(const std::string& run_id, std::int64_t step) const;
  std::int64_t newest_step(const std::string& run_id) const;  // -1 when the run is empty
  const std::vector<Entry>& entries(const std::string& run_id) const;  // oldest first
  std::vector<std::string> runs() const;
  std::uint64_t memory_bytes() const { return memory_bytes_; }
  const StoreOptions& options() const { return options_; }
  const std::vector<Emulation>& emulations() const { return emulations_; }

  // True when some checkpoint of the run lies at or before newest - window on the emulation's axis.
  bool covered(const std::string& run_id, const Emulation& e) const;

 private:
  void retain(const std::string& run_id);
  void spill();
  std::filesystem::path file_for(const StoredCheckpoint& c) const;

  StoreOptions options_;
  std::vector<Emulation> emulations_;
  std::map<std::string, std::vector<Entry>> runs_;
  std::uint64_t memory_bytes_ = 0;
  bool warned_budget_ = false;
};

std::int64_t position(const StoredCheckpoint& c, Axis axis);

}  // namespace wsm::merger
