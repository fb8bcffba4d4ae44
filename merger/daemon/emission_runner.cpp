#include "merger/daemon/emission_runner.h"

#include <filesystem>
#include <sstream>

#include <spdlog/spdlog.h>

#include "wsm/merger/merge_engine.h"
#include "wsm/schedules/decay.h"
#include "wsm/core/error.h"
#include "wsm/core/version.h"

namespace wsm::merger {

namespace {
template <class T>
std::string json_list(const std::vector<T>& v) {
  return nlohmann::json(v).dump();
}
std::string output_dtype_name(const EmissionJob& job) {
  return job.dtype ? std::string(dtype_name(*job.dtype)) : std::string("as-input");
}

}  // namespace

Provenance emission_provenance(const EmissionJob& job, const EmissionOutput& out, std::string method,
                               std::string accumulate, std::vector<std::string> copied) {
  Provenance p;
  p.tool = "wsm serve";
  p.version = std::string(wsm_version());
  p.run_id = job.run_id;
  p.spec = out.emulation.spec.to_string();
  p.shape = out.emulation.spec.kind_name();
  p.floor = out.emulation.spec.floor();
  p.sampling_rule = sampling_rule(out.emulation.spec, true);
  p.window = out.emulation.window;
  p.axis = std::string(axis_name(out.emulation.axis));
  for (std::size_t j = 0; j < out.source_steps.size(); ++j)
    p.sources.push_back({"", out.source_steps[j],
                         j < out.source_tokens.size() ? std::optional<std::int64_t>(out.source_tokens[j]) : std::nullopt,
                         j < out.source_weights.size() ? out.source_weights[j] : 0.0});
  p.dtype = output_dtype_name(job);
  p.accumulate = std::move(accumulate);
  p.method = std::move(method);
  // A part of a sharded run names only its node's slices, and every part must carry the same
  // provenance: the copied tensors are recorded for whole checkpoints only.
  if (!job.part) p.copied_from_newest = std::move(copied);
  return p;
}

std::map<std::string, std::string> emission_metadata(const EmissionJob& job, const EmissionOutput& out,
                                                     std::string method, std::string accumulate,
                                                     std::vector<std::string> copied) {
  // The model's metadata travels along (the output is usable on its own); provenance keys win.
  std::map<std::string, std::string> extra;
  if (job.model) extra = *job.model;
  for (auto& [key, value] :
       provenance_metadata(emission_provenance(job, out, std::move(method), std::move(accumulate), std::move(copied))))
    extra.insert_or_assign(key, std::move(value));
  if (job.part) extra[kPartLayoutKey] = layout_to_json(*job.part);
  return extra;
}

OutputRecord output_record(const EmissionJob& job, const EmissionOutput& out, std::string method) {
  OutputRecord r;
  r.run_id = job.run_id;
  r.label = out.emulation.label;
  r.spec = out.emulation.spec.to_string();
  r.window = out.emulation.window;
  r.axis = std::string(axis_name(out.emulation.axis));
  r.step = job.step;
  r.tokens = job.tokens;
  r.path = out.path.string();
  r.sources = out.source_steps;
  r.source_tokens = out.source_tokens;
  r.weights = out.source_weights;
  r.sampling = sampling_rule(out.emulation.spec, true);
  r.dtype = output_dtype_name(job);
  r.method = std::move(method);
  r.request_id = job.request_id;
  if (job.part) {  // the path opens the whole multi-part checkpoint once every node's part is there
    r.path = out.path.parent_path().string();
    r.part = OutputRecord::Part{out.path.filename().string(), job.part->world_size, job.part->ranks};
  }
  return r;
}

std::vector<OutputRecord> run_emission(const EmissionJob& job, kernels::MergeBackend& backend,
                                       const RunnerOptions& options) {
  if (job.outputs.empty()) return {};
  if (job.inputs.empty()) throw Error("run '" + job.run_id + "': emission with no inputs");

  std::vector<std::unique_ptr<CheckpointReader>> readers;
  std::vector<CheckpointReader*> inputs;
  for (const auto& in : job.inputs) {
    readers.push_back(open_stored(in));
    inputs.push_back(readers.back().get());
  }
  const MergePlan plan = plan_merge(inputs, job.dtype);

  std::vector<std::unique_ptr<CheckpointWriter>> writers;
  std::vector<CheckpointWriter*> outputs;
  std::vector<double> weights;
  for (const auto& out : job.outputs) {
    std::filesystem::create_directories(out.path.parent_path());
    CheckpointMeta meta;
    meta.step = job.step;
    meta.tokens = job.tokens;
    meta.run_id = job.run_id;
    meta.extra = emission_metadata(job, out, "full-merge", options.accumulate_f64 ? "f64" : "f32", plan.copied_names());
    writers.push_back(create_output(out.path, meta, plan.output_tensors, job.output));
    outputs.push_back(writers.back().get());
    weights.insert(weights.end(), out.weights.begin(), out.weights.end());
  }
  EngineOptions engine;
  // The engine allocates whole chunks up front: no larger than the largest tensor.
  std::uint64_t largest = 1;
  for (const auto& t : plan.output_tensors) largest = std::max<std::uint64_t>(largest, t.numel());
  engine.chunk_elements = std::min<std::uint64_t>(options.chunk_elements, largest);
  engine.accumulate_f64 = options.accumulate_f64;
  const auto stats = merge_checkpoints(inputs, weights, outputs, plan, backend, engine);
  check_stored_reads(inputs);
  commit_all(outputs);  // all outputs of the emission or none

  std::vector<OutputRecord> records;
  for (const auto& out : job.outputs) {
    spdlog::info("wrote {} (run '{}', step {}, {} over steps {}, {:.2f} s)", out.path.string(), job.run_id, job.step,
                 out.emulation.label, json_list(out.source_steps), stats.seconds);
    records.push_back(output_record(job, out, "full-merge"));
  }
  return records;
}

}  // namespace wsm::merger
