#include "merger/daemon/running_sum.h"

#include <algorithm>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "merger/daemon/emission_runner.h"
#include "wsm/merger/merge_engine.h"
#include "wsm/core/error.h"
#include "wsm/formats/tensor_convert.h"

namespace wsm::merger {

std::uint64_t RunningSums::State::bytes() const {
  std::uint64_t n = 0;
  for (const auto& s : sums) n += s.size() * sizeof(double);
  return n;
}

std::optional<OutputRecord> RunningSums::apply(const EmissionJob& job, const SumItem& item) {
  const auto key = std::make_pair(job.run_id, item.output.emulation.label);
  std::optional<OutputRecord> record;
  try {
    record = run(job, item, states_[key]);
  } catch (...) {
    states_.erase(key);
    std::uint64_t total = 0;
    for (const auto& [k, s] : states_) total += s.bytes();
    bytes_ = total;
    throw;
  }
  std::uint64_t total = 0;
  for (const auto& [k, s] : states_) total += s.bytes();
  bytes_ = total;
  return record;
}

namespace {

std::span<std::byte> as_writable(std::vector<double>& v) {
  return {reinterpret_cast<std::byte*>(v.data()), v.size() * sizeof(double)};
}

// Buffers for one chunk, reused from chunk to chunk.
struct ChunkBuffers {
  std::vector<std::byte> raw, out_bytes;
  std::vector<double> theta, out64;
};

// Elements [e0, e0 + n) of tensor `name` in r, as f64 in b.theta.
void load(CheckpointReader& r, const std::string& name, std::uint64_t e0, std::uint64_t n, ChunkBuffers& b) {
  const DType dt = r.info(name).dtype;
  b.raw.resize(n * dtype_size(dt));
  r.read(name, e0 * dtype_size(dt), b.raw);
  b.theta.resize(n);
  cast_elements(dt, b.raw, DType::f64, as_writable(b.theta));
}

// An integer/bool tensor: never averaged, copied from the newest checkpoint.
void copy_tensor(CheckpointReader& newest, CheckpointWriter& writer, const std::string& name, std::uint64_t step,
                 ChunkBuffers& b) {
  const std::uint64_t total = newest.info(name).nbytes();
  for (std::uint64_t off = 0; off < total; off += step) {
    b.raw.resize(std::min(step, total - off));
    newest.read(name, off, b.raw);
    writer.write(name, off, b.raw);
  }
}

// The checkpoints a sum update reads, by step: the selection, then the leaving ones.
class Readers {
 public:
  CheckpointReader& at(std::int64_t step, const EmissionJob& job) {
    auto& r = by_step_[step];
    if (!r) {
      const auto found = std::find_if(job.context.begin(), job.context.end(), [&](const Entry& e) { return e->step == step; });
      if (found == job.context.end()) throw Error("running sum: step " + std::to_string(step) + " is not in the window");
      r = open_stored(*found);
    }
    return *r;
  }
  CheckpointReader& open(const Entry& e) { return *(by_step_[e->step] = open_stored(e)); }
  std::vector<const CheckpointReader*> opened() const {
    std::vector<const CheckpointReader*> out;
    for (const auto& [step, r] : by_step_)
      if (r) out.push_back(r.get());
    return out;
  }

 private:
  std::map<std::int64_t, std::unique_ptr<CheckpointReader>> by_step_;
};

std::string method_name(const SumModel& model) {
  return model.anchor_apart ? "running-sum (ema)" : "running-sum (uniform)";
}

std::unique_ptr<CheckpointWriter> create_sum_output(const EmissionJob& job, const SumItem& item, const MergePlan& plan) {
  std::filesystem::create_directories(item.output.path.parent_path());
  CheckpointMeta meta;
  meta.step = job.step;
  meta.tokens = job.tokens;
  meta.run_id = job.run_id;
  meta.extra = emission_metadata(job, item.output, method_name(item.model), "f64", plan.copied_names());
  return create_output(item.output.path, meta, plan.output_tensors, job.output);
}

// Applies `update` to one float tensor's sum V, `chunk` elements at a time, and writes the
// output's chunk (scale * V, plus the anchor's term) when there is a writer.
void update_tensor(const EmissionJob& job, const SumUpdatePlan& update, const TensorInfo& info, std::vector<double>& V,
                   std::uint64_t chunk, Readers& readers, CheckpointWriter* writer, ChunkBuffers& b) {
  const std::uint64_t numel = info.numel();
  for (std::uint64_t e0 = 0; e0 < numel; e0 += chunk) {
    const std::uint64_t n = std::min(chunk, numel - e0);
    double* v = V.data() + e0;
    for (const SumTerm& r : update.remove) {
      load(readers.at(r.step, job), info.name, e0, n, b);
      for (std::uint64_t i = 0; i < n; ++i) v[i] -= r.coefficient * b.theta[i];
    }
    for (const std::int64_t step : update.add) {
      load(readers.at(step, job), info.name, e0, n, b);
      if (update.ratio == 1.0)
        for (std::uint64_t i = 0; i < n; ++i) v[i] += b.theta[i];
      else
        for (std::uint64_t i = 0; i < n; ++i) v[i] = update.ratio * v[i] + b.theta[i];
    }
    if (!writer) continue;
    b.out64.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) b.out64[i] = update.scale * v[i];
    if (update.anchor) {
      load(readers.at(update.anchor->step, job), info.name, e0, n, b);
      for (std::uint64_t i = 0; i < n; ++i) b.out64[i] += update.anchor->coefficient * b.theta[i];
    }
    b.out_bytes.resize(n * dtype_size(info.dtype));
    cast_elements(DType::f64, as_writable(b.out64), info.dtype, b.out_bytes);
    writer->write(info.name, e0 * dtype_size(info.dtype), b.out_bytes);
  }
}

}  // namespace

std::optional<OutputRecord> RunningSums::run(const EmissionJob& job, const SumItem& item, State& st) {
  const auto& members = item.members;
  if (members.empty() || members.size() != item.weights.size())
    throw Error("run '" + job.run_id + "', " + item.output.emulation.label + ": running sum with no selection");
  if (item.model.anchor_apart && members.size() < 2)
    throw Error("run '" + job.run_id + "', " + item.output.emulation.label + ": empty running-sum tail");

  // Readers for the selection (plan_merge checks that their manifests agree).
  Readers readers;
  std::vector<CheckpointReader*> inputs;
  std::vector<std::int64_t> steps, readable;
  for (const auto& m : members) {
    inputs.push_back(&readers.open(m));
    steps.push_back(m->step);
  }
  const MergePlan plan = plan_merge(inputs, job.dtype);
  readable = steps;
  for (const auto& e : job.context) readable.push_back(e->step);
  std::sort(readable.begin(), readable.end());

  const SumUpdatePlan update = plan_sum_update(st.tensors == plan.output_tensors ? st.sum : SumState{}, item.model,
                                               steps, item.weights, readable, options_.recompute_every);
  if (update.rebuild) {
    st = State{};
    st.tensors = plan.output_tensors;
    st.sums.resize(plan.output_tensors.size());
    ++recomputes_;
  } else {
    ++incremental_;
  }

  std::unique_ptr<CheckpointWriter> writer = item.emit ? create_sum_output(job, item, plan) : nullptr;
  const std::uint64_t chunk = std::max<std::uint64_t>(1, options_.chunk_elements);
  ChunkBuffers b;
  for (std::size_t ti = 0; ti < plan.output_tensors.size(); ++ti) {
    const std::string& name = plan.output_tensors[ti].name;
    if (plan.copied[ti]) {
      if (writer) copy_tensor(*inputs.back(), *writer, name, chunk * 8, b);
      continue;
    }
    if (update.rebuild) st.sums[ti].assign(plan.output_tensors[ti].numel(), 0.0);
    update_tensor(job, update, plan.output_tensors[ti], st.sums[ti], chunk, readers, writer.get(), b);
  }
  check_stored_reads(readers.opened());  // throws: the state is forgotten (apply), not poisoned
  st.sum = update.next;
  if (!writer) return std::nullopt;
  writer->commit();

  auto record = output_record(job, item.output, method_name(item.model));
  record.running_sum = OutputRecord::RunningSum{update.rebuild, st.sum.updates_since_rebuild, update.reads()};
  spdlog::info("wrote {} (run '{}', step {}, {} over steps {}, running sum: {})", item.output.path.string(), job.run_id,
               job.step, item.output.emulation.label, nlohmann::json(item.output.source_steps).dump(),
               update.rebuild ? "recomputed" : "incremental");
  return record;
}

}  // namespace wsm::merger
