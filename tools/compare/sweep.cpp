#include "tools/compare/sweep.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "wsm/merger/offline_merge.h"
#include "wsm/core/error.h"
#include "tools/compare/report.h"
#include "tools/compare/window_merge.h"

namespace wsm::tools::compare {
namespace fs = std::filesystem;
namespace {

// The inputs oldest first by recorded step (the offline merge's own ordering and checks).
std::vector<merger::OfflineInput> ordered_inputs(const std::vector<fs::path>& checkpoints,
                                                 const std::vector<std::optional<std::int64_t>>& steps) {
  merger::OfflineMergeRequest req;
  req.inputs = checkpoints;
  req.input_steps = steps;
  req.specs = {MergeSpec(ShapeRule{DecayShape::linear})};
  req.outputs = {"unused"};
  auto plan = merger::plan_offline_merge(req);
  for (const auto& in : plan.inputs)
    if (!in.step) throw Error(in.path.string() + ": records no step (metadata, trainer_state.json, a checkpoint-N or step_N name); a sweep over windows needs every checkpoint's step: give it as PATH@STEP");
  return plan.inputs;
}

std::vector<std::int64_t> default_windows(const std::vector<merger::OfflineInput>& inputs) {
  if (inputs.size() < 2) throw Error("wsm compare sweep: needs at least 2 checkpoints");
  std::vector<std::int64_t> gaps;
  for (std::size_t i = 1; i < inputs.size(); ++i) gaps.push_back(*inputs[i].step - *inputs[i - 1].step);
  std::nth_element(gaps.begin(), gaps.begin() + std::ptrdiff_t(gaps.size() / 2), gaps.end());
  const std::int64_t interval = gaps[gaps.size() / 2];
  const std::int64_t span = *inputs.back().step - *inputs.front().step + interval;  // every checkpoint in the window
  std::vector<std::int64_t> windows;
  for (std::int64_t n : {2, 4, 8, 16})
    if (n * interval <= span) windows.push_back(n * interval);
  return windows;
}

std::string output_extension(const fs::path& newest) {
  const auto ext = newest.extension();
  return ext == ".h5" || ext == ".hdf5" ? ".h5" : ".safetensors";
}

void keep_only_best(std::vector<ScoredModel>& rows, ScoreOrder order) {
  const auto ranked = rank_models(rows, order);
  const auto best = std::find_if(ranked.begin(), ranked.end(), [](auto* m) { return m->method == Method::wsm; });
  for (const auto& m : rows)
    if (m.method == Method::wsm && (best == ranked.end() || &m != *best)) fs::remove(m.path);
}

}  // namespace

SweepResult run_sweep(const SweepOptions& o) {
  if (o.out.empty()) throw Error("wsm compare sweep: --out DIR is required");
  if (o.specs.empty()) throw Error("wsm compare sweep: no shapes");
  const auto inputs = ordered_inputs(o.checkpoints, o.checkpoint_steps);
  const auto windows = o.windows.empty() ? default_windows(inputs) : o.windows;
  if (windows.empty()) throw Error("wsm compare sweep: no window fits the checkpoints' span");
  fs::create_directories(o.out);

  SweepResult result;
  ScoredModel raw;
  raw.method = Method::raw;
  raw.step = inputs.back().step;
  raw.path = fs::absolute(inputs.back().path);
  result.rows.push_back(raw);
  for (auto w : windows) {
    if (w <= 0) throw Error(fmt::format("wsm compare sweep: window {} is not positive", w));
    spdlog::info("compare sweep: merging {} shape(s) over the last {} steps", o.specs.size(), w);
    auto rows = merge_window(o.checkpoints, o.specs, w, o.out / "models", output_extension(inputs.back().path),
                             o.checkpoint_steps);
    result.rows.insert(result.rows.end(), rows.begin(), rows.end());
  }
  ScoreCache cache(o.out / "scores.json");
  score_models(result.rows, o.evaluator, cache, o.jobs);
  if (o.keep == Keep::best) keep_only_best(result.rows, o.evaluator.order);

  std::vector<std::string> specs, paths;
  for (const auto& s : o.specs) specs.push_back(s.to_string());
  for (const auto& p : o.checkpoints) paths.push_back(fs::absolute(p).string());
  result.config = {{"shapes", specs},     {"windows", windows}, {"keep", o.keep == Keep::best ? "best" : "all"},
                   {"jobs", o.jobs},      {"checkpoints", paths}};
  return result;
}

}  // namespace wsm::tools::compare
