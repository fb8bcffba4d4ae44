#include "merger/running_sum.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "merger/emission_runner.h"
#include "wsm/merger/merge_engine.h"
#include "wsm/core/error.h"
#include "wsm/formats/tensor_convert.h"

namespace wsm::merger {

std::uint64_t RunningSums::State::bytes() const {
  std::uint64_t n = 0;
  for (const auto& s : sums) n += s.size() * sizeof(double);
  return n;
}

std::optional<nlohmann::json> RunningSums::apply(const EmissionJob& job, const SumItem& item) {
  const auto key = std::make_pair(job.run_id, item.output.emulation.label);
  std::optional<nlohmann::json> record;
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
}  // namespace

std::optional<nlohmann::json> RunningSums::run(const EmissionJob& job, const SumItem& item, State& st) {
  const auto& members = item.members;
  if (members.empty() || members.size() != item.weights.size())
    throw Error("run '" + job.run_id + "', " + item.output.emulation.label + ": running sum with no selection");
  const std::size_t tail_from = item.model.anchor_apart ? 1 : 0;
  std::vector<std::int64_t> tail;
  for (std::size_t i = tail_from; i < members.size(); ++i) tail.push_back(members[i]->step);
  if (tail.empty()) throw Error("run '" + job.run_id + "', " + item.output.emulation.label + ": empty running-sum tail");

  // Readers for the selection (plan_merge checks that their manifests agree) and, below, for
  // the checkpoints leaving the tail.
  std::map<std::int64_t, std::unique_ptr<CheckpointReader>> readers;
  std::vector<CheckpointReader*> inputs;
  for (const auto& m : members) {
    auto& r = readers[m->step];
    r = open_stored(m);
    inputs.push_back(r.get());
  }
  const MergePlan plan = plan_merge(inputs, job.dtype);

  // Incremental when the new tail is the old tail minus a prefix plus newer checkpoints, every
  // checkpoint leaving it can still be read, and that reads fewer checkpoints than a recompute.
  bool incremental = !st.tail.empty() && st.model == item.model && st.tensors == plan.output_tensors &&
                     st.updates_since_recompute < options_.recompute_every;
  std::vector<CheckpointReader*> removals;
  std::vector<CheckpointReader*> arrivals;
  if (incremental) {
    auto it = std::find(st.tail.begin(), st.tail.end(), tail.front());
    const std::size_t p = static_cast<std::size_t>(it - st.tail.begin());
    const std::size_t keep = st.tail.size() - p;
    if (it == st.tail.end() && tail.front() <= st.tail.back()) incremental = false;
    if (keep > tail.size() || !std::equal(st.tail.begin() + static_cast<std::ptrdiff_t>(p), st.tail.end(), tail.begin()))
      incremental = false;
    for (std::size_t i = 0; incremental && i < p; ++i) {
      const auto step = st.tail[i];
      if (!readers.count(step)) {
        auto found = std::find_if(job.context.begin(), job.context.end(), [&](const Entry& e) { return e->step == step; });
        if (found == job.context.end()) {
          incremental = false;  // it left the window while an update was skipped: recompute
          break;
        }
        readers[step] = open_stored(*found);
      }
      removals.push_back(readers[step].get());
    }
    if (incremental)
      for (std::size_t i = keep; i < tail.size(); ++i) arrivals.push_back(readers[tail[i]].get());
    if (removals.size() + arrivals.size() >= tail.size()) incremental = false;
  }
  if (!incremental) {
    removals.clear();
    arrivals.clear();
    for (auto step : tail) arrivals.push_back(readers[step].get());
    st = State{};
    st.model = item.model;
    st.tensors = plan.output_tensors;
    st.sums.resize(plan.output_tensors.size());
    ++recomputes_;
  } else {
    ++st.updates_since_recompute;
    ++incremental_;
  }
  const std::size_t old_tail = st.tail.size();
  const double ratio = item.model.ratio;
  CheckpointReader* newest = inputs.back();
  CheckpointReader* anchor = item.model.anchor_apart ? inputs.front() : nullptr;

  std::unique_ptr<CheckpointWriter> writer;
  if (item.emit) {
    std::filesystem::create_directories(item.output.path.parent_path());
    CheckpointMeta meta;
    meta.step = job.step;
    meta.tokens = job.tokens;
    meta.run_id = job.run_id;
    meta.extra = emission_metadata(job, item.output,
                                   item.model.anchor_apart ? "running-sum (ema)" : "running-sum (uniform)", "f64");
    writer = create_checkpoint(item.output.path, meta, plan.output_tensors);
  }

  std::vector<std::byte> raw;
  std::vector<double> buf, out64;
  std::vector<std::byte> out_bytes;
  const std::uint64_t chunk = std::max<std::uint64_t>(1, options_.chunk_elements);
  for (std::size_t ti = 0; ti < plan.output_tensors.size(); ++ti) {
    const auto& info = plan.output_tensors[ti];
    const std::uint64_t numel = info.numel();
    if (plan.copied[ti]) {  // integer/bool: never averaged, copied from the newest
      if (!writer) continue;
      const std::uint64_t total = newest->info(info.name).nbytes(), step = chunk * 8;
      for (std::uint64_t off = 0; off < total; off += step) {
        raw.resize(std::min(step, total - off));
        newest->read(info.name, off, raw);
        writer->write(info.name, off, raw);
      }
      continue;
    }
    auto& V = st.sums[ti];
    if (!incremental) V.assign(numel, 0.0);
    for (std::uint64_t e0 = 0; e0 < numel; e0 += chunk) {
      const std::uint64_t n = std::min(chunk, numel - e0);
      double* v = V.data() + e0;
      auto load = [&](CheckpointReader& r) {
        const DType dt = r.info(info.name).dtype;
        raw.resize(n * dtype_size(dt));
        r.read(info.name, e0 * dtype_size(dt), raw);
        buf.resize(n);
        cast_elements(dt, raw, DType::f64, as_writable(buf));
      };
      for (std::size_t k = 0; k < removals.size(); ++k) {
        const double g = std::pow(ratio, static_cast<double>(old_tail - 1 - k));
        load(*removals[k]);
        for (std::uint64_t i = 0; i < n; ++i) v[i] -= g * buf[i];
      }
      for (auto* a : arrivals) {
        load(*a);
        if (ratio == 1.0)
          for (std::uint64_t i = 0; i < n; ++i) v[i] += buf[i];
        else
          for (std::uint64_t i = 0; i < n; ++i) v[i] = ratio * v[i] + buf[i];
      }
      if (!writer) continue;
      out64.resize(n);
      const double c_newest = item.weights.back();
      for (std::uint64_t i = 0; i < n; ++i) out64[i] = c_newest * v[i];
      if (anchor) {
        load(*anchor);
        const double c0 = item.weights.front();
        for (std::uint64_t i = 0; i < n; ++i) out64[i] += c0 * buf[i];
      }
      out_bytes.resize(n * dtype_size(info.dtype));
      cast_elements(DType::f64, as_writable(out64), info.dtype, out_bytes);
      writer->write(info.name, e0 * dtype_size(info.dtype), out_bytes);
    }
  }
  st.tail = tail;
  if (!writer) return std::nullopt;
  writer->commit();

  auto record = output_record(job, item.output);
  record["method"] = item.model.anchor_apart ? "running-sum (ema)" : "running-sum (uniform)";
  record["running_sum"] = {{"recomputed", !incremental},
                           {"updates_since_recompute", st.updates_since_recompute},
                           {"read", removals.size() + arrivals.size() + (anchor ? 1 : 0)}};
  spdlog::info("wrote {} (run '{}', step {}, {} over steps {}, running sum: {})", item.output.path.string(), job.run_id,
               job.step, item.output.emulation.label, nlohmann::json(item.output.source_steps).dump(),
               incremental ? "incremental" : "recomputed");
  return record;
}

}  // namespace wsm::merger
