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

// Removes the stale temporaries of one output, "<final_path>.tmp-<pid>-<n>" beside it (`wsm merge`
// before writing that output: its folder may hold anything else, which is left alone). The pid is
// this host's: a writer on another node sharing the folder with a live pid here is left alone too.
SweepResult sweep_stale_temporaries_of(const std::filesystem::path& final_path);

}  // namespace wsm::merger
