#include "wsm/merger/offline_merge.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "merger/engine/model_metadata.h"
#include "merger/engine/stale_temporaries.h"
#include "merger/offline/slice_reader.h"
#include "merger/offline/work_split.h"
#include "wsm/core/error.h"
#include "wsm/core/file_name.h"
#include "wsm/core/version.h"
#include "wsm/formats/file_stamp.h"
#include "wsm/formats/hf_directory.h"
#include "wsm/formats/mapped_file.h"
#include "wsm/formats/range_file_writer.h"

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
  std::vector<FileStamp> stamps;  // the inputs that are single files, as they were before opening
};

// Which inputs each output merges and with what weights: the window's selection (sampled at each
// input's position), or every input with the shape's even-spacing rule.
void choose_weights(const OfflineMergeRequest& req, OfflinePlan& plan) {
  const std::size_t n = plan.inputs.size();
  if (req.window_steps || req.window_tokens) {
    const bool steps = bool(req.window_steps);
    std::vector<std::int64_t> positions;
    for (const auto& in : plan.inputs) {
      const auto& pos = steps ? in.step : in.tokens;
      if (!pos)
        throw Error("merge: " + in.path.string() + " records no " + (steps ? "step" : "token count") +
                    ", needed by --window-" + (steps ? "steps" : "tokens"));
      positions.push_back(*pos);
    }
    if (!steps)
      for (std::size_t i = 1; i < positions.size(); ++i)
        if (positions[i] <= positions[i - 1])
          throw Error("merge: token counts do not increase with steps (" + plan.inputs[i - 1].path.string() + ", " +
                      plan.inputs[i].path.string() + ")");
    const std::int64_t window = steps ? *req.window_steps : *req.window_tokens;
    if (!window_covered(positions, window))
      spdlog::warn(
          "merge: the window of {} {} reaches past the history (oldest input at {}, newest at {}): "
          "shapes are sampled over the whole window, so the oldest input weighs more than in a "
          "covered window (docs/schedules.md, \"Windows and the history\")",
          window, steps ? "steps" : "tokens", positions.front(), positions.back());
    std::vector<WindowSelection> sels;
    for (const auto& spec : req.specs) sels.push_back(select_window(spec, positions, window));
    for (const auto& s : sels)
      if (s.indices != sels.front().indices) throw Error("merge: shapes selected different windows");
    plan.used = sels.front().indices;
    for (const auto& s : sels) {
      plan.weights.push_back(s.weights);
      plan.sampling.push_back(sampling_rule(req.specs[plan.sampling.size()], true));
    }
  } else {
    plan.used.resize(n);
    std::iota(plan.used.begin(), plan.used.end(), 0);
    for (const auto& spec : req.specs) {
      plan.weights.push_back(merge_weights(spec, int(n)));
      plan.sampling.push_back(sampling_rule(spec, false));
    }
    // The shapes assume evenly spaced checkpoints: say so when the recorded steps are not.
    const bool all_steps =
        std::all_of(plan.inputs.begin(), plan.inputs.end(), [](const auto& in) { return in.step.has_value(); });
    if (n > 2 && all_steps) {
      const std::int64_t first_gap = *plan.inputs[1].step - *plan.inputs[0].step;
      for (std::size_t i = 2; i < n; ++i)
        if (*plan.inputs[i].step - *plan.inputs[i - 1].step != first_gap) {
          spdlog::warn(
              "inputs are not evenly spaced in steps; weights assume even spacing "
              "(use --window-steps to sample the shape at each checkpoint's step)");
          break;
        }
    }
  }
}

// Inputs read in place must not change under the merge: a truncated one (read as zeros past its
// new end, mapped_file.h) or one rewritten in place would mix into the outputs. Checked after the
// merge, before anything is published: the mapped files (shards included) and the single-file
// inputs (also those read through HDF5 rather than mapped).
void check_inputs_unchanged(const std::vector<FileStamp>& stamps) {
  std::vector<std::string> changed = changed_mapped_files();
  for (const auto& s : stamps)
    if (auto why = s.changed(); !why.empty()) changed.push_back(s.path.string() + ": " + why);
  if (changed.empty()) return;
  std::string list;
  for (const auto& c : changed)
    if (list.find(c) == std::string::npos) list += (list.empty() ? "" : "; ") + c;
  throw Error("merge: an input changed during the merge, no output written: " + list);
}

Opened open_and_plan(const OfflineMergeRequest& req) {
  if (req.inputs.empty()) throw Error("merge: no input checkpoints given");
  if (req.specs.empty()) throw Error("merge: no merge shape given");
  if (req.outputs.size() != req.specs.size())
    throw Error("merge: " + std::to_string(req.specs.size()) + " shapes but " + std::to_string(req.outputs.size()) +
                " output paths");
  if (req.window_steps && req.window_tokens) throw Error("merge: give --window-steps or --window-tokens, not both");
  if (req.shard_bytes > 0)
    for (const auto& o : req.outputs)
      if (!o.extension().empty())
        throw Error("merge: --shard-size writes a directory of shards, but output " + o.string() +
                    " names a " + o.extension().string() + " file (give a directory name)");
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

  Opened op;
  for (const auto& p : req.inputs) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) op.stamps.push_back(FileStamp::of(p));
  }
  auto unordered = open_all(req.inputs);
  const auto steps = input_steps(req, unordered);
  const auto order = order_inputs(req, unordered, steps);
  for (std::size_t i : order) {
    const auto& r = unordered[i];
    const bool given = !req.input_steps.empty() && req.input_steps[i];
    const auto source = r->meta().extra.find("wsm.step_source");
    op.plan.inputs.push_back({r->path(), steps[i], r->meta().tokens, total_bytes(*r),
                              given ? "given" : source != r->meta().extra.end() ? source->second : "metadata"});
    op.readers.push_back(std::move(unordered[i]));
  }
  choose_weights(req, op.plan);

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
  p.copied_from_newest = plan.merge.copied_names();
  return p;
}

std::string output_stem(const MergeSpec& spec) { return file_name_safe(spec.to_string()); }

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

namespace {

// Runs this rank's part of one step, then agrees with the others: if the step failed on any rank,
// every rank throws that rank's message here (so no rank waits for one that has given up).
template <class Step>
void collective_step(RankGroup& group, Step&& step) {
  std::string error;
  try {
    step();
  } catch (const std::exception& e) {
    error = *e.what() ? e.what() : "unknown error";
  } catch (...) {
    error = "unknown error";
  }
  agree_or_throw(group, error);
}

bool directory_output(const OfflineMergeRequest& req, const fs::path& out) {
  return req.shard_bytes > 0 || out.extension().empty();
}

CheckpointMeta output_meta(const OfflineMergeRequest& req, const OfflinePlan& plan, std::size_t o,
                           const CheckpointMeta& newest) {
  CheckpointMeta meta;
  meta.step = plan.inputs[plan.used.back()].step;  // as ordered (a given PATH@STEP included)
  meta.tokens = newest.tokens;
  meta.lr = newest.lr;
  meta.run_id = newest.run_id;
  // The newest input's own metadata (model config, vocabulary) travels along, so a merged file is
  // usable on its own; its wsm.* keys are replaced by this merge's provenance.
  meta.extra = model_metadata(newest.extra);
  Provenance provenance = merge_provenance(req, plan, o);
  provenance.run_id = meta.run_id;
  for (auto& [key, value] : provenance_metadata(provenance)) meta.extra.insert_or_assign(key, std::move(value));
  return meta;
}

// Rank 0: every output created under its temporary name, files sized and headers written.
std::vector<std::unique_ptr<CheckpointWriter>> lay_out_outputs(const OfflineMergeRequest& req, const OfflinePlan& plan,
                                                               const CheckpointReader& newest) {
  const bool hf = is_hf_model_dir(newest.path());
  std::vector<std::unique_ptr<CheckpointWriter>> outputs;
  for (std::size_t o = 0; o < req.outputs.size(); ++o) {
    WriteOptions options;
    options.shard_bytes = req.shard_bytes;
    if (hf && directory_output(req, req.outputs[o])) {
      options.hf_template = newest.path();
      if (options.shard_bytes == 0) options.shard_bytes = kHfDefaultShardBytes;
    }
    if (req.outputs[o].has_parent_path()) fs::create_directories(req.outputs[o].parent_path());
    sweep_stale_temporaries_of(req.outputs[o]);  // what a killed merge into this output left
    outputs.push_back(create_laid_out_checkpoint(req.outputs[o], output_meta(req, plan, o, newest.meta()),
                                                 plan.merge.output_tensors, options));
  }
  return outputs;
}

std::string layouts_to_json(const std::vector<std::unique_ptr<CheckpointWriter>>& outputs) {
  nlohmann::json all = nlohmann::json::array();
  for (const auto& w : outputs) {
    nlohmann::json files = nlohmann::json::array();
    for (const auto& f : w->layout()) files.push_back({{"path", f.path.string()}, {"offsets", f.offsets}});
    all.push_back(std::move(files));
  }
  return all.dump();
}

std::vector<std::vector<LaidOutFile>> layouts_from_json(const std::string& text) {
  std::vector<std::vector<LaidOutFile>> layouts;
  for (const auto& files : nlohmann::json::parse(text)) {
    auto& layout = layouts.emplace_back();
    for (const auto& f : files)
      layout.push_back({f.at("path").get<std::string>(), f.at("offsets").get<std::map<std::string, std::uint64_t>>()});
  }
  return layouts;
}

// What every rank must agree on before any output exists: the inputs (by file name, size and step:
// nodes may mount the same files at different paths), windows, weights, tensors.
std::string plan_fingerprint(const OfflinePlan& plan) {
  nlohmann::json j;
  for (const auto& in : plan.inputs)
    j["inputs"].push_back({in.path.filename().string(), in.bytes, in.step ? *in.step : -1});
  j["used"] = plan.used;
  j["weights"] = plan.weights;
  for (const auto& t : plan.merge.output_tensors) j["tensors"].push_back({t.name, dtype_name(t.dtype), t.shape});
  return j.dump();
}

// This rank's share: its slices of the used inputs merged into its byte ranges of every output.
EngineStats merge_share(const OfflineMergeRequest& req, const Opened& op, std::span<CheckpointReader* const> used,
                        const std::vector<TensorSlice>& mine, const std::vector<std::vector<LaidOutFile>>& layouts,
                        kernels::MergeBackend& backend, std::function<void(std::uint64_t, std::uint64_t)> progress) {
  std::vector<std::unique_ptr<SliceReader>> slices;
  std::vector<CheckpointReader*> inputs;
  for (CheckpointReader* r : used) {
    slices.push_back(std::make_unique<SliceReader>(*r, mine, op.plan.merge.output_tensors));
    inputs.push_back(slices.back().get());
  }
  const MergePlan part = plan_merge(inputs, req.dtype);
  std::vector<std::unique_ptr<RangeFileWriter>> writers;
  std::vector<CheckpointWriter*> outs;
  std::vector<double> weights;
  for (std::size_t o = 0; o < req.outputs.size(); ++o) {
    std::vector<TensorByteRange> ranges;
    for (const auto& s : mine) {
      const TensorInfo& t = op.plan.merge.output_tensors[s.tensor];
      ranges.push_back({t.name, s.begin * dtype_size(t.dtype), s.count * dtype_size(t.dtype)});
    }
    writers.push_back(std::make_unique<RangeFileWriter>(layouts.at(o), ranges));
    outs.push_back(writers.back().get());
    weights.insert(weights.end(), op.plan.weights[o].begin(), op.plan.weights[o].end());
  }
  EngineOptions eo;
  eo.chunk_elements = req.chunk_elements;
  eo.accumulate_f64 = req.accumulate_f64;
  eo.progress = std::move(progress);
  EngineStats stats = merge_checkpoints(inputs, weights, outs, part, backend, eo);
  for (auto* w : outs) w->prepare();  // this rank's bytes complete and on disk
  warn_nonfinite(inputs, req.outputs, part, stats.nonfinite);
  return stats;
}

std::vector<RankStats> gather_stats(RankGroup& group, const EngineStats& mine) {
  const nlohmann::json j = {mine.bytes_read, mine.bytes_written, mine.seconds};
  std::vector<RankStats> all;
  for (const auto& text : group.all_gather(j.dump())) {
    const auto v = nlohmann::json::parse(text);
    all.push_back({v[0].get<std::uint64_t>(), v[1].get<std::uint64_t>(), v[2].get<double>()});
  }
  return all;
}

}  // namespace

OfflineResult run_offline_merge(const OfflineMergeRequest& req, RankGroup& group,
                                std::function<void(std::uint64_t, std::uint64_t)> progress) {
  const auto start = std::chrono::steady_clock::now();
  guard_mapped_reads();  // an input truncated under the merge: an error below, not SIGBUS
  Opened op;
  std::unique_ptr<kernels::MergeBackend> backend;
  collective_step(group, [&] {
    op = open_and_plan(req);  // everything validated before the first output exists
    backend = kernels::make_backend(req.backend);
  });
  {
    const auto prints = group.all_gather(plan_fingerprint(op.plan));
    agree_or_throw(group, prints[std::size_t(group.rank())] == prints[0]
                              ? ""
                              : "planned a different merge than rank 0 (are the inputs the same for every rank?)");
  }
  std::vector<CheckpointReader*> used;
  for (std::size_t i : op.plan.used) used.push_back(op.readers[i].get());

  std::vector<std::unique_ptr<CheckpointWriter>> outputs;  // rank 0 only; removed unless committed
  std::string layout_text;
  collective_step(group, [&] {
    if (group.rank() != 0) return;
    outputs = lay_out_outputs(req, op.plan, *used.back());
    layout_text = layouts_to_json(outputs);
  });
  const auto layouts = layouts_from_json(group.broadcast(layout_text));

  const auto shares = split_work(op.plan.merge, element_costs(op.plan.merge, used, req.outputs.size()), group.size());
  if (group.rank() == 0)
    spdlog::info("merging {} checkpoints into {} output(s) with the {} backend, {}", used.size(), req.outputs.size(),
                 backend->name(), group.size() == 1 ? "1 process" : std::to_string(group.size()) + " ranks");
  OfflineResult result;
  collective_step(group, [&] {
    result.stats = merge_share(req, op, used, shares[std::size_t(group.rank())], layouts, *backend, progress);
    check_inputs_unchanged(op.stamps);
  });
  collective_step(group, [&] {
    if (group.rank() != 0) return;
    std::vector<CheckpointWriter*> outs;
    for (auto& w : outputs) outs.push_back(w.get());
    commit_all(outs);  // all outputs or none
  });
  result.ranks = gather_stats(group, result.stats);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.plan = std::move(op.plan);
  result.backend = backend->name();
  return result;
}

OfflineResult run_offline_merge(const OfflineMergeRequest& req, std::function<void(std::uint64_t, std::uint64_t)> progress) {
  const auto group = make_single_rank_group();
  return run_offline_merge(req, *group, std::move(progress));
}

}  // namespace wsm::merger
