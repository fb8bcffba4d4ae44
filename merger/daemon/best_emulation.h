#pragma once
// The best emulation, live: from the scores in index.json, which output scored best at each step
// of each run (index.json's "best", `wsm status`), and `wsm serve --publish-best`'s OUT/<run>/best,
// a symbolic link swapped atomically to the best-scoring output of the newest scored step, so a
// user can always load "the model to ship now" without reading a report (docs/readout.md).
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace wsm::merger {

enum class ScoreOrder { lower_is_better, higher_is_better };

// One entry per (run, step) with at least one scored output: {"run_id", "step", "label", "path",
// "file", "score"}, by run, oldest step first. `outputs`: index.json's "outputs".
nlohmann::json best_by_step(const nlohmann::json& outputs, ScoreOrder order);

// The entry of `best` (best_by_step's) at the run's newest scored step, or nothing.
std::optional<nlohmann::json> best_now(const nlohmann::json& best, const std::string& run_id);

// Points out_dir/<run>/best at `target` (an output under out_dir/<run>/) by a relative symbolic
// link created under a temporary name and renamed over the old one: a reader sees the old model or
// the new one, never none. Throws wsm::Error naming the link.
void publish_best(const std::filesystem::path& out_dir, const std::string& run_id, const std::filesystem::path& target);

}  // namespace wsm::merger
