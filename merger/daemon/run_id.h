#pragma once
// Run ids name folders in --store and --out, so the daemon accepts only ids that are already safe
// file names and uses them unchanged in both places: one id, one folder, and no two runs can meet
// in one (docs/protocol.md, "Run ids"). The safe set: 1 to 128 characters of [A-Za-z0-9._-]
// (wsm/core/file_name.h's set), starting with a letter or digit (so never ".", "..", a hidden name
// or an option), and never containing ".tmp-" (the mark of an unfinished atomic write, wsm/formats/atomic_file.h).
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace wsm::merger {

inline constexpr std::size_t kMaxRunIdBytes = 128;

// Why `run_id` is not a safe run id (one line), or nullopt when it is.
std::optional<std::string> run_id_problem(std::string_view run_id);

// base/run_id; throws wsm::Error when the id is not safe (callers check at Hello/MergeRequest).
std::filesystem::path run_folder(const std::filesystem::path& base, const std::string& run_id);

}  // namespace wsm::merger
