#include "tools/compare/window_merge.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "wsm/merger/offline_merge.h"

namespace wsm::tools::compare {
namespace fs = std::filesystem;

std::string shape_label(const MergeSpec& spec) {
  if (const ShapeRule* s = spec.shape()) return std::string(decay_shape_name(s->shape));
  return spec.to_string();
}

std::vector<ScoredModel> merge_window(const std::vector<fs::path>& inputs, const std::vector<MergeSpec>& specs,
                                      std::int64_t window, const fs::path& out_dir, const std::string& ext,
                                      const std::vector<std::optional<std::int64_t>>& steps) {
  merger::OfflineMergeRequest req;
  req.inputs = inputs;
  req.input_steps = steps;
  req.specs = specs;
  req.window_steps = window;
  for (const auto& spec : specs) {
    std::string stem = merger::output_stem(spec);
    if (ext.empty()) std::replace(stem.begin(), stem.end(), '.', '_');  // a directory: no dot to read as an extension
    req.outputs.push_back(fs::absolute(out_dir / fmt::format("{}_w{}{}", stem, window, ext)));
  }
  // The plan (metadata only) names the sources and weights, and whether there is anything to merge.
  merger::OfflinePlan plan = merger::plan_offline_merge(req);
  if (plan.used.size() < 2) {
    const auto& only = plan.inputs[plan.used.front()];
    spdlog::warn("window {} steps holds one checkpoint ({}, step {}): that is the raw checkpoint, not a merge; not merged "
                 "nor ranked (give windows of at least two checkpoint intervals)",
                 window, only.path.string(), only.step.value_or(-1));
    return {};
  }
  const bool done = std::all_of(req.outputs.begin(), req.outputs.end(), [](const fs::path& p) { return fs::exists(p); });
  if (!done) plan = merger::run_offline_merge(req).plan;

  std::vector<ScoredModel> rows;
  for (std::size_t o = 0; o < specs.size(); ++o) {
    ScoredModel m;
    m.method = Method::wsm;
    m.shape = shape_label(specs[o]);
    m.floor = specs[o].floor();
    m.window = window;
    for (std::size_t u : plan.used) m.sources.push_back(plan.inputs[u].step.value_or(-1));
    m.step = m.sources.empty() ? std::nullopt : std::optional<std::int64_t>(m.sources.back());
    m.weights = plan.weights[o];
    m.path = req.outputs[o];
    rows.push_back(std::move(m));
  }
  return rows;
}

}  // namespace wsm::tools::compare
