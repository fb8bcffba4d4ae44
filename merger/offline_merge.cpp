#include "wsm/merger/offline_merge.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "wsm/core/error.h"
#include "wsm/core/version.h"

namespace wsm::merger {
namespace fs = std::filesystem;

namespace {

std::string mib(std::uint64_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
  return buf;
}

std::vector<std::unique_ptr<CheckpointReader>> open_all(const std::vector<fs::path>& paths) {
  std::vector<std::unique_ptr<CheckpointReader>> readers;
  for (const auto& p : paths) readers.push_back(open_checkpoint(p));
  return readers;
}

// Each input's step: given explicitly (PATH@STEP), else recorded by the file or its folder.
std::vector<std::optional<std::int64_t>> input_steps(const OfflineMergeRequest& req,
                                                     const std::vector<std::unique_ptr<CheckpointReader>>& readers) {
  if (!req.input_steps.empty() && req.input_steps.size() != readers.size())
    throw Error("merge: " + std::to_string(req.input_steps.size()) + " explicit steps for " +
                std::to_string(readers.size()) + " inputs");
  std::vector<std::optional<std::int64_t>> steps;
  for (std::size_t i = 0; i < readers.size(); ++i)
    steps.push_back(!req.input_steps.empty() && req.input_steps[i] ? req.input_steps[i] : readers[i]->meta().step);
  return steps;
}

// True when some spec gives n checkpoints different weights, so which one is oldest matters.
bool weights_depend_on_order(const std::vector<MergeSpec>& specs, std::size_t n) {
  for (const auto& spec : specs) {
    const auto w = merge_weights(spec, int(n));
    for (double x : w)
      if (std::abs(x - w.front()) > 1e-12) return true;
  }
  return false;
}

// Orders inputs by step (ties are an error: two checkpoints of the same step cannot both be in a
// window). Without a step for every input, the order given stands only where it cannot change the
// result (equal weights); otherwise it is an error, since a text-sorted glob (checkpoint-1000,
// checkpoint-1500, checkpoint-500) would give the oldest model the newest weight.
std::vector<std::size_t> order_inputs(const OfflineMergeRequest& req,
                                      const std::vector<std::unique_ptr<CheckpointReader>>& readers,
                                      const std::vector<std::optional<std::int64_t>>& steps) {
  std::vector<std::size_t> order(readers.size());
  std::iota(order.begin(), order.end(), 0);
  const auto missing = std::find_if(steps.begin(), steps.end(), [](const auto& s) { return !s.has_value(); });
  if (missing != steps.end()) {
    if (readers.size() > 1 && weights_depend_on_order(req.specs, readers.size()))
      throw Error("merge: " + readers[std::size_t(missing - steps.begin())]->path().string() +
                  " records no step (no step in its metadata, no trainer_state.json, not named checkpoint-N or "
                  "step_N), and these weights depend on which checkpoint is oldest: give every input as PATH@STEP");
    return order;
  }
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return *steps[a] < *steps[b]; });
  for (std::size_t i = 1; i < order.size(); ++i)
    if (*steps[order[i]] == *steps[order[i - 1]])
      throw Error("merge: " + readers[order[i - 1]]->path().string() + " and " + readers[order[i]]->path().string() +
                  " both have step " + std::to_string(*steps[order[i]]));
  return order;
}

std::uint64_t total_bytes(const CheckpointReader& r) {
  std::uint64_t n = 0;
  for (const auto& t : r.tensors()) n += t.nbytes();
  return n;
}

struct Opened {
  OfflinePlan plan;
  std::vector<std::unique_ptr<CheckpointReader>> readers;  // ordered like plan.inputs
};

Opened open_and_plan(const OfflineMergeRequest& req) {
  if (req.inputs.empty()) throw Error("merge: no input checkpoints given");
  if (req.specs.empty()) throw Error("merge: no merge shape given");
  if (req.outputs.size() != req.specs.size())
    throw Error("merge: " + std::to_string(req.specs.size()) + " shapes but " + std::to_string(req.outputs.size()) +
                " output paths");
  if (req.window_steps && req.window_tokens) throw Error("merge: give --window-steps or --window-tokens, not both");
  {
    std::set<fs::path> seen;
    for (const auto& o : req.outputs) {
      const fs::path key = fs::absolute(o).lexically_normal();
      if (!seen.insert(key).second) throw Error("merge: two outputs would be written to " + o.string());
      for (const auto& in : req.inputs)
        if (fs::absolute(in).lexically_normal() == key)
          throw Error("merge: output " + o.string() + " is also an input");
    }
  }

  auto unordered = open_all(req.inputs);
  const auto steps = input_steps(req, unordered);
  const auto order = order_inputs(req, unordered, steps);
  Opened op;
  for (std::size_t i : order) {
    const auto& r = unordered[i];
    const bool given = !req.input_steps.empty() && req.input_steps[i];
    const auto source = r->meta().extra.find("wsm.step_source");
    op.plan.inputs.push_back({r->path(), steps[i], r->meta().tokens, total_bytes(*r),
                              given ? "given" : source != r->meta().extra.end() ? source->second : "metadata"});
    op.readers.push_back(std::move(unordered[i]));
  }
  const std::size_t n = op.readers.size();

  if (req.window_steps || req.window_tokens) {
    const bool steps = bool(req.window_steps);
    std::vector<std::int64_t> positions;
    for (const auto& in : op.plan.inputs) {
      const auto& pos = steps ? in.step : in.tokens;
      if (!pos)
        throw Error("merge: " + in.path.string() + " records no " + (steps ? "step" : "token count") +
                    ", needed by --window-" + (steps ? "steps" : "tokens"));
      positions.push_back(*pos);
    }
    if (!steps)
      for (std::size_t i = 1; i < positions.size(); ++i)
        if (positions[i] <= positions[i - 1])
          throw Error("merge: token counts do not increase with steps (" + op.plan.inputs[i - 1].path.string() +
                      ", " + op.plan.inputs[i].path.string() + ")");
    const std::int64_t window = steps ? *req.window_steps : *req.window_tokens;
    std::vector<WindowSelection> sels;
    for (const auto& spec : req.specs) sels.push_back(select_window(spec, positions, window));
    for (const auto& s : sels)
      if (s.indices != sels.front().indices) throw Error("merge: shapes selected different windows");
    op.plan.used = sels.front().indices;
    for (const auto& s : sels) {
      op.plan.weights.push_back(s.weights);
      op.plan.sampling.push_back(std::string("w_i=f((p_i-p_0)/window) over ") + (steps ? "steps" : "tokens") +
                                 ", window=" + std::to_string(window));
    }
  } else {
    op.plan.used.resize(n);
    std::iota(op.plan.used.begin(), op.plan.used.end(), 0);
    for (const auto& spec : req.specs) {
      op.plan.weights.push_back(merge_weights(spec, int(n)));
      op.plan.sampling.push_back(std::string(kSamplingRule));
    }
    // The shapes assume evenly spaced checkpoints: say so when the recorded steps are not.
    const bool all_steps =
        std::all_of(op.plan.inputs.begin(), op.plan.inputs.end(), [](const auto& in) { return in.step.has_value(); });
    if (n > 2 && all_steps) {
      const std::int64_t first_gap = *op.plan.inputs[1].step - *op.plan.inputs[0].step;
      for (std::size_t i = 2; i < n; ++i)
        if (*op.plan.inputs[i].step - *op.plan.inputs[i - 1].step != first_gap) {
          spdlog::warn("inputs are not evenly spaced in steps; weights assume even spacing "
                       "(use --window-steps to sample the shape at each checkpoint's step)");
          break;
        }
    }
  }

  std::vector<CheckpointReader*> used;
  for (std::size_t i : op.plan.used) used.push_back(op.readers[i].get());
  op.plan.merge = plan_merge(used, req.dtype);
  EngineOptions eo;
  eo.chunk_elements = req.chunk_elements;
  op.plan.buffer_bytes = engine_buffer_bytes(op.plan.merge, used, req.outputs.size(), eo);
  return op;
}

}  // namespace

std::string OfflinePlan::describe(const OfflineMergeRequest& req) const {
  std::string s = "inputs (oldest first):\n";
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto& in = inputs[i];
    const auto it = std::find(used.begin(), used.end(), i);
    s += "  " + in.path.string() + "  step=" + (in.step ? std::to_string(*in.step) + " (" + in.step_source + ")" : "?") +
         (in.tokens ? "  tokens=" + std::to_string(*in.tokens) : "") + "  " + mib(in.bytes) +
         (it == used.end() ? "  (outside the window: not read)" : "") + "\n";
  }
  for (std::size_t o = 0; o < weights.size(); ++o) {
    s += "output " + req.outputs[o].string() + "  shape=" + req.specs[o].to_string() + "  sampling " + sampling[o] +
         "\n  weights:";
    for (double w : weights[o]) {
      char buf[32];
      std::snprintf(buf, sizeof buf, " %.6f", w);
      s += buf;
    }
    s += "\n";
  }
  std::size_t copied = std::count(merge.copied.begin(), merge.copied.end(), true);
  s += std::to_string(merge.output_tensors.size()) + " tensors (" + std::to_string(copied) +
       " integer/bool copied from the newest), dtype " +
       (req.dtype ? std::string(dtype_name(*req.dtype)) : std::string("as the newest input")) + "\n";
  s += "read " + mib(merge.bytes_read) + ", write " + mib(merge.bytes_written_per_output * weights.size()) +
       ", merge buffers " + mib(buffer_bytes) + "\n";
  return s;
}

std::uint64_t default_chunk_elements(kernels::BackendKind backend) {
  return kernels::backend_uses_gpu(backend) ? 16u << 20 : 1u << 18;
}

OfflinePlan plan_offline_merge(const OfflineMergeRequest& request) { return open_and_plan(request).plan; }

Provenance merge_provenance(const OfflineMergeRequest& req, const OfflinePlan& plan, std::size_t o) {
  const MergeSpec& spec = req.specs[o];
  Provenance p;
  p.tool = "wsm merge";
  p.version = std::string(wsm_version());
  p.spec = spec.to_string();
  p.shape = spec.kind_name();
  p.floor = spec.floor();
  p.sampling_rule = plan.sampling[o];
  if (req.window_steps) p.window = *req.window_steps, p.axis = "steps";
  if (req.window_tokens) p.window = *req.window_tokens, p.axis = "tokens";
  for (std::size_t u = 0; u < plan.used.size(); ++u) {
    const auto& in = plan.inputs[plan.used[u]];
    p.sources.push_back({fs::absolute(in.path).string(), in.step, in.tokens, plan.weights[o][u]});
  }
  p.dtype = req.dtype ? std::string(dtype_name(*req.dtype)) : std::string("as-input");
  p.accumulate = req.accumulate_f64 ? "f64" : "f32";
  p.method = "full-merge";
  for (std::size_t t = 0; t < plan.merge.copied.size(); ++t)
    if (plan.merge.copied[t]) p.copied_from_newest.push_back(plan.merge.output_tensors[t].name);
  return p;
}

std::string output_stem(const MergeSpec& spec) {
  std::string s = spec.to_string();
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  return s;
}

namespace {

// NaN/Inf in the merged outputs: one warning per output tensor, and one per input tensor that
// holds them (found by scanning the inputs of only those tensors), as `wsm convert` warns.
void warn_nonfinite(std::span<CheckpointReader* const> inputs, const std::vector<fs::path>& outputs,
                    const MergePlan& plan, const std::vector<std::vector<FiniteScan>>& found) {
  for (std::size_t t = 0; t < plan.output_tensors.size(); ++t) {
    const std::string& name = plan.output_tensors[t].name;
    bool any = false;
    for (std::size_t o = 0; o < found.size(); ++o) {
      if (found[o][t].clean()) continue;
      any = true;
      spdlog::warn("{}: tensor '{}' holds {}", outputs[o].string(), name, describe_nonfinite(found[o][t]));
    }
    if (!any) continue;
    bool in_input = false;
    for (CheckpointReader* in : inputs) {
      const FiniteScan s = scan_tensor(*in, in->info(name));
      if (s.clean()) continue;
      in_input = true;
      spdlog::warn("{}: input tensor '{}' holds {}, merged as they are", in->path().string(), name,
                   describe_nonfinite(s));
    }
    if (!in_input) spdlog::warn("tensor '{}': no input holds NaN/Inf; the weighted sum overflowed the output dtype", name);
  }
}

}  // namespace

OfflineResult run_offline_merge(const OfflineMergeRequest& req, std::function<void(std::uint64_t, std::uint64_t)> progress) {
  Opened op = open_and_plan(req);  // everything validated before the first output exists
  auto backend = kernels::make_backend(req.backend);
  std::vector<CheckpointReader*> used;
  for (std::size_t i : op.plan.used) used.push_back(op.readers[i].get());
  const CheckpointMeta& newest = used.back()->meta();

  std::vector<std::unique_ptr<CheckpointWriter>> writers;
  std::vector<CheckpointWriter*> outs;
  std::vector<double> weights;
  for (std::size_t o = 0; o < req.outputs.size(); ++o) {
    CheckpointMeta meta;
    meta.step = op.plan.inputs[op.plan.used.back()].step;  // as ordered (a given PATH@STEP included)
    meta.tokens = newest.tokens;
    meta.lr = newest.lr;
    meta.run_id = newest.run_id;
    // The newest input's own metadata (model config, vocabulary) travels along, so a merged file is
    // usable on its own; its wsm.* keys are replaced by this merge's provenance.
    for (const auto& [key, value] : newest.extra)
      if (!key.starts_with("wsm.")) meta.extra[key] = value;
    Provenance provenance = merge_provenance(req, op.plan, o);
    provenance.run_id = meta.run_id;
    for (auto& [key, value] : provenance_metadata(provenance)) meta.extra.insert_or_assign(key, std::move(value));
    if (req.outputs[o].has_parent_path()) fs::create_directories(req.outputs[o].parent_path());
    writers.push_back(create_checkpoint(req.outputs[o], meta, op.plan.merge.output_tensors));
    outs.push_back(writers.back().get());
    weights.insert(weights.end(), op.plan.weights[o].begin(), op.plan.weights[o].end());
  }
  spdlog::info("merging {} checkpoints into {} output(s) with the {} backend", used.size(), outs.size(),
               backend->name());
  EngineOptions eo;
  eo.chunk_elements = req.chunk_elements;
  eo.accumulate_f64 = req.accumulate_f64;
  eo.progress = std::move(progress);
  OfflineResult result;
  result.stats = merge_checkpoints(used, weights, outs, op.plan.merge, *backend, eo);
  commit_all(outs);  // all outputs or none
  warn_nonfinite(used, req.outputs, op.plan.merge, result.stats.nonfinite);
  result.plan = std::move(op.plan);
  result.backend = backend->name();
  return result;
}

}  // namespace wsm::merger
