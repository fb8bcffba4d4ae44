#pragma once
// `wsm compare trend`: WSM against WSD across training regimes. Reads the results.json of several
// finished studies (each one run length, so one tokens-per-parameter figure) and, per shape and
// decay duration as a fraction of the run, sets the best merge's paired difference to WSD beside
// tokens per parameter: where, as training gets longer, a merge starts to match a decay. Writes
// trend.json, trend.md and one picture per duration fraction (trend_<pct>pct.png/.svg).
#include <filesystem>
#include <string>
#include <vector>

namespace wsm::tools::compare {

struct TrendOptions {
  std::vector<std::filesystem::path> studies;  // study directories (or their results.json)
  std::filesystem::path out;
  std::string command_line;
};

// Returns trend.md's text. Throws wsm::Error naming a study that is missing, not a study, or
// whose summary is empty.
std::string run_trend(const TrendOptions& options);

}  // namespace wsm::tools::compare
