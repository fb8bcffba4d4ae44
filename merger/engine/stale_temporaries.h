#pragma once
// A process killed while writing (kill -9, power loss) leaves its atomic-write temporaries behind
// ("<final>.tmp-<pid>-<n>", wsm/formats/atomic_file.h). On start the daemon removes those under --out
// and --store whose writer is gone: a temporary of a live process (another wsm, or this one) is
// left alone.
#include <cstdint>
#include <filesystem>

namespace wsm::merger {

struct SweepResult {
  std::size_t removed = 0;
  std::uint64_t bytes = 0;
};

// Removes stale temporaries (files or directory trees) anywhere under `root`; a missing root is
// empty. Never throws: what cannot be removed is logged.
SweepResult sweep_stale_temporaries(const std::filesystem::path& root);

}  // namespace wsm::merger
