#pragma once
// The pictures of a `wsm compare` report, each written as PNG and SVG (tools/plot.h).
// Study: validation loss against step (trunk, WSD branches, merges), WSM against WSD per shape and
// duration with error bars, the LR of a WSD branch beside the piecewise-constant LR its merge
// emulates, and the merge weights per shape. Sweep: score against window per shape, merge weights.
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace wsm::tools::compare {

struct CompareReport;

// Returns (file stem, caption) of each picture written into `dir`.
std::vector<std::pair<std::string, std::string>> draw_figures(const CompareReport& report,
                                                              const std::filesystem::path& dir);

}  // namespace wsm::tools::compare
