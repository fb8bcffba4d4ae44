#include "merger/daemon/emission.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "merger/daemon/run_id.h"
#include "wsm/formats/checkpoint_name.h"
#include "wsm/core/error.h"

namespace wsm::merger {

bool emission_due(std::int64_t previous_step, std::int64_t step, std::int64_t every) {
  if (every <= 0) return false;
  if (previous_step < 0) return step % every == 0;
  return step / every > previous_step / every;
}

EmissionJob plan_emission(const WindowStore& store, const std::string& run_id,
                          const std::vector<Emulation>& emulations, const std::filesystem::path& out_dir,
                          std::optional<DType> dtype, bool require_covered) {
  const auto& entries = store.entries(run_id);
  EmissionJob job;
  job.run_id = run_id;
  job.dtype = dtype;
  if (entries.empty()) return job;
  job.step = entries.back()->step;
  job.tokens = entries.back()->tokens;
  job.part = entries.back()->part;
  job.model = entries.back()->model;

  // Selections first, by index into entries; then the union becomes the job's inputs.
  std::vector<std::pair<Emulation, WindowSelection>> selections;
  std::vector<bool> used(entries.size(), false);
  for (const auto& e : emulations) {
    std::vector<std::int64_t> positions;
    for (const auto& c : entries) positions.push_back(position(*c, e.axis));
    if (require_covered && !window_covered(positions, e.window)) continue;  // WindowStore::covered's rule
    WindowSelection sel;
    try {
      sel = select_window(e.spec, positions, e.window);
    } catch (const Error& err) {
      job.skipped.push_back(e.label + ": " + err.what());
      continue;
    }
    for (auto i : sel.indices) used[i] = true;
    selections.emplace_back(e, std::move(sel));
  }
  std::vector<std::size_t> input_of(entries.size(), 0);
  for (std::size_t i = 0; i < entries.size(); ++i)
    if (used[i]) {
      input_of[i] = job.inputs.size();
      job.inputs.push_back(entries[i]);
    }
  const std::string step_name = checkpoint_file_name(job.step);
  for (auto& [e, sel] : selections) {
    EmissionOutput out;
    out.emulation = e;
    out.weights.assign(job.inputs.size(), 0.0);
    for (std::size_t j = 0; j < sel.indices.size(); ++j) {
      const auto& c = *entries[sel.indices[j]];
      out.weights[input_of[sel.indices[j]]] = sel.weights[j];
      out.source_steps.push_back(c.step);
      out.source_tokens.push_back(c.tokens);
      out.source_weights.push_back(sel.weights[j]);
    }
    out.path = run_folder(out_dir, run_id) / e.label / step_name;
    if (job.part) out.path = out.path.replace_extension() / part_file_name(*job.part);
    job.outputs.push_back(std::move(out));
  }
  return job;
}

void split_running_sums(EmissionJob& job, bool due, const std::vector<Entry>& window,
                        const std::vector<Entry>& dropped) {
  std::vector<EmissionOutput> full;
  for (auto& out : job.outputs) {
    auto model = sum_model(out.emulation.spec, out.source_weights);
    if (!model) {
      if (due) full.push_back(std::move(out));
      continue;
    }
    SumItem item;
    for (auto step : out.source_steps)
      for (const auto& in : job.inputs)
        if (in->step == step) item.members.push_back(in);
    item.weights = out.source_weights;
    item.model = *model;
    item.emit = due;
    item.output = std::move(out);
    job.sums.push_back(std::move(item));
  }
  // The full merges read only their own sources: rebuild inputs and re-align their weights.
  std::vector<Entry> inputs;
  for (const auto& in : job.inputs) {
    bool used = false;
    for (const auto& out : full)
      for (auto step : out.source_steps) used = used || step == in->step;
    if (used) inputs.push_back(in);
  }
  for (auto& out : full) {
    out.weights.assign(inputs.size(), 0.0);
    for (std::size_t j = 0; j < out.source_steps.size(); ++j)
      for (std::size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i]->step == out.source_steps[j]) out.weights[i] = out.source_weights[j];
  }
  job.inputs = std::move(inputs);
  job.outputs = std::move(full);
  if (!job.sums.empty()) {
    job.context = window;
    job.context.insert(job.context.end(), dropped.begin(), dropped.end());
  }
}

bool writes_output(const EmissionJob& job) {
  if (!job.outputs.empty()) return true;
  for (const auto& s : job.sums)
    if (s.emit) return true;
  return false;
}

}  // namespace wsm::merger
