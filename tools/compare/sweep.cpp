#include "tools/compare/sweep.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "wsm/core/error.h"
#include "wsm/core/file_name.h"
#include "wsm/formats/hf_directory.h"
#include "wsm/formats/tensor_convert.h"
#include "wsm/merger/offline_merge.h"
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

// The form every scored model takes: a Hugging Face model directory ("") when the newest input is
// one, else the newest input's file format.
std::string output_extension(const fs::path& newest) {
  if (is_hf_model_dir(newest)) return "";
  const auto ext = newest.extension();
  return ext == ".h5" || ext == ".hdf5" ? ".h5" : ".safetensors";
}

bool in_form(const fs::path& model, const std::string& ext) {
  if (ext.empty()) return is_hf_model_dir(model);
  const auto have = model.extension();
  return ext == ".h5" ? have == ".h5" || have == ".hdf5" : have == ext;
}

// The baseline as the eval command gets it: as given when it is already in the merges' form, else
// converted into models/baseline-<name><ext> (values unchanged; a Hugging Face directory takes its
// config and tokenizer from the newest input). A conversion already there is kept (a resumed sweep).
fs::path baseline_model(const Baseline& b, const fs::path& newest, const std::string& ext, const fs::path& models) {
  if (in_form(b.path, ext)) return fs::absolute(b.path);
  std::string stem = "baseline-" + file_name_safe(b.name);
  if (ext.empty()) std::replace(stem.begin(), stem.end(), '.', '_');  // a directory: no dot to read as an extension
  const fs::path out = fs::absolute(models / (stem + ext));
  if (fs::exists(out)) return out;
  fs::create_directories(models);
  ConvertOptions o;
  if (ext.empty()) {
    o.write.hf_template = newest;
    o.write.shard_bytes = kHfDefaultShardBytes;
  }
  spdlog::info("compare sweep: baseline '{}': {} converted to {} for the eval command", b.name, b.path.string(), out.string());
  convert_checkpoint(b.path, out, o);
  return out;
}

void keep_only_best(std::vector<ScoredModel>& rows, ScoreOrder order) {
  const auto ranked = rank_models(rows, order);
  const auto best = std::find_if(ranked.begin(), ranked.end(), [](auto* m) { return m->method == Method::wsm; });
  for (const auto& m : rows)
    if (m.method == Method::wsm && (best == ranked.end() || &m != *best)) fs::remove_all(m.path);  // files or directories
}

std::vector<ScoredModel> baseline_rows(const SweepOptions& o, const fs::path& newest, const std::string& ext) {
  std::vector<ScoredModel> rows;
  for (const auto& b : o.baselines) {
    if (std::count_if(o.baselines.begin(), o.baselines.end(), [&](const Baseline& x) { return x.name == b.name; }) > 1)
      throw Error("wsm compare sweep: two baselines are named '" + b.name + "'");
    if (!fs::exists(b.path)) throw Error("wsm compare sweep: baseline '" + b.name + "': " + b.path.string() + " does not exist");
    ScoredModel m;
    m.method = Method::baseline;
    m.name = b.name;
    m.step = open_checkpoint(b.path)->meta().step;  // also checks that wsm reads it, before any merge
    m.path = baseline_model(b, newest, ext, o.out / "models");
    rows.push_back(std::move(m));
  }
  return rows;
}

}  // namespace

Baseline parse_baseline(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw Error("wsm compare sweep: --baseline '" + text + "': write NAME=PATH (e.g. wsd-linear=wsd/checkpoint-600)");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

SweepResult run_sweep(const SweepOptions& o) {
  if (o.out.empty()) throw Error("wsm compare sweep: --out DIR is required");
  if (o.specs.empty()) throw Error("wsm compare sweep: no shapes");
  const auto inputs = ordered_inputs(o.checkpoints, o.checkpoint_steps);
  const auto windows = o.windows.empty() ? default_windows(inputs) : o.windows;
  if (windows.empty()) throw Error("wsm compare sweep: no window fits the checkpoints' span");
  for (auto w : windows)
    if (w <= 0) throw Error(fmt::format("wsm compare sweep: window {} is not positive", w));
  fs::create_directories(o.out);

  SweepResult result;
  ScoredModel raw;
  raw.method = Method::raw;
  raw.step = inputs.back().step;
  raw.path = fs::absolute(inputs.back().path);
  result.rows.push_back(raw);
  const std::string ext = output_extension(inputs.back().path);
  for (auto& b : baseline_rows(o, inputs.back().path, ext)) result.rows.push_back(std::move(b));
  for (auto w : windows) {
    spdlog::info("compare sweep: merging {} shape(s) over the last {} steps", o.specs.size(), w);
    auto rows = merge_window(o.checkpoints, o.specs, w, o.out / "models", ext, o.checkpoint_steps);
    result.rows.insert(result.rows.end(), rows.begin(), rows.end());
  }
  ScoreCache cache(o.out / "scores.json");
  score_models(result.rows, o.evaluator, cache, o.jobs);
  if (o.keep == Keep::best) keep_only_best(result.rows, o.evaluator.order);

  std::vector<std::string> specs, paths;
  for (const auto& s : o.specs) specs.push_back(s.to_string());
  for (const auto& p : o.checkpoints) paths.push_back(fs::absolute(p).string());
  nlohmann::json baselines = nlohmann::json::object();
  for (const auto& b : o.baselines) baselines[b.name] = fs::absolute(b.path).string();
  result.config = {{"shapes", specs}, {"windows", windows}, {"keep", o.keep == Keep::best ? "best" : "all"},
                   {"jobs", o.jobs}, {"checkpoints", paths}, {"baselines", baselines},
                   {"model_form", ext.empty() ? "hf" : ext.substr(1)}};
  return result;
}

}  // namespace wsm::tools::compare
