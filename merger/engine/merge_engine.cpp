#include "wsm/merger/merge_engine.h"

#include <algorithm>
#include <map>

#include "merger/engine/merge_pipeline.h"
#include "wsm/core/error.h"

namespace wsm::merger {
namespace {

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string where(const CheckpointReader& r, const std::string& tensor) {
  return r.path().string() + ": tensor '" + tensor + "'";
}

}  // namespace

std::vector<std::string> MergePlan::copied_names() const {
  std::vector<std::string> names;
  for (std::size_t t = 0; t < copied.size(); ++t)
    if (copied[t]) names.push_back(output_tensors[t].name);
  return names;
}

MergePlan plan_merge(std::span<CheckpointReader* const> inputs, std::optional<DType> out_dtype) {
  if (inputs.empty()) throw Error("merge: no input checkpoints");
  if (out_dtype && !is_float(*out_dtype))
    throw Error("merge: output dtype " + std::string(dtype_name(*out_dtype)) + " is not a float dtype");
  const CheckpointReader& newest = *inputs.back();
  MergePlan plan;
  std::map<std::string, const TensorInfo*> by_name;
  for (const auto& t : newest.tensors()) by_name[t.name] = &t;

  for (const CheckpointReader* r : inputs) {
    if (r->tensors().size() != newest.tensors().size()) {
      // Name the first tensor present in one and not the other.
      std::map<std::string, bool> names;
      for (const auto& t : r->tensors()) names[t.name] = true;
      for (const auto& t : newest.tensors())
        if (!names.count(t.name))
          throw Error("merge: " + r->path().string() + " lacks tensor '" + t.name + "' (present in " +
                      newest.path().string() + ")");
      for (const auto& t : r->tensors())
        if (!by_name.count(t.name))
          throw Error("merge: " + where(*r, t.name) + " is not in " + newest.path().string());
      throw Error("merge: " + r->path().string() + " has a different tensor count than " + newest.path().string());
    }
    for (const auto& t : r->tensors()) {
      const auto it = by_name.find(t.name);
      if (it == by_name.end()) throw Error("merge: " + where(*r, t.name) + " is not in " + newest.path().string());
      const TensorInfo& n = *it->second;
      if (t.shape != n.shape)
        throw Error("merge: " + where(*r, t.name) + " has shape " + shape_text(t.shape) + ", " +
                    newest.path().string() + " has " + shape_text(n.shape));
      if (is_float(t.dtype) != is_float(n.dtype) || (!is_float(n.dtype) && t.dtype != n.dtype))
        throw Error("merge: " + where(*r, t.name) + " has dtype " + std::string(dtype_name(t.dtype)) + ", " +
                    newest.path().string() + " has " + std::string(dtype_name(n.dtype)) +
                    " (float tensors must be float everywhere, integer tensors identical)");
    }
  }
  for (const auto& t : newest.tensors()) {
    TensorInfo out = t;
    const bool copy = !is_float(t.dtype);
    if (!copy && out_dtype) out.dtype = *out_dtype;
    plan.copied.push_back(copy);
    plan.bytes_written_per_output += out.nbytes();
    plan.bytes_read += copy ? t.nbytes() : 0;
    if (!copy)
      for (const CheckpointReader* r : inputs) plan.bytes_read += r->info(t.name).nbytes();
    plan.output_tensors.push_back(std::move(out));
  }
  return plan;
}

std::uint64_t engine_buffer_bytes(const MergePlan& plan, std::span<CheckpointReader* const> inputs,
                                  std::size_t outputs, const EngineOptions& options) {
  const SlotLayout l = slot_layout(plan, inputs, find_views(plan, inputs), outputs, options.chunk_elements);
  return std::uint64_t(std::max(1, options.chunks_in_flight)) * l.bytes;
}

EngineStats merge_checkpoints(std::span<CheckpointReader* const> inputs, std::span<const double> weights,
                              std::span<CheckpointWriter* const> outputs, const MergePlan& plan,
                              kernels::MergeBackend& backend, const EngineOptions& options) {
  const std::size_t k = inputs.size(), m = outputs.size();
  if (k == 0 || m == 0) throw Error("merge: needs at least one input and one output");
  if (weights.size() != k * m)
    throw Error("merge: " + std::to_string(weights.size()) + " weights given for " + std::to_string(m) +
                " outputs x " + std::to_string(k) + " inputs");
  MergePipeline pipeline(inputs, weights, outputs, plan, backend, options);
  return pipeline.run();
}

}  // namespace wsm::merger
