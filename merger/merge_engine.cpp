#include "merger/merge_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "merger/merge_queue.h"
#include "protocol/error.h"

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

namespace {

struct Sizes {
  std::uint64_t in_elem = 1, out_elem = 1;
  std::uint64_t max_numel = 1;  // no buffer larger than the largest tensor needs
};
Sizes max_sizes(const MergePlan& plan, std::span<CheckpointReader* const> inputs) {
  Sizes s;
  // Sized by the float tensors only: copied (integer) tensors go through in smaller element counts.
  for (std::size_t t = 0; t < plan.output_tensors.size(); ++t) {
    s.max_numel = std::max<std::uint64_t>(s.max_numel, plan.output_tensors[t].numel());
    if (plan.copied[t]) continue;
    s.out_elem = std::max<std::uint64_t>(s.out_elem, dtype_size(plan.output_tensors[t].dtype));
    for (const CheckpointReader* r : inputs)
      s.in_elem = std::max<std::uint64_t>(s.in_elem, dtype_size(r->info(plan.output_tensors[t].name).dtype));
  }
  return s;
}

std::uint64_t buffer_bytes(const Sizes& s, std::size_t k, std::size_t m, const EngineOptions& o) {
  const std::uint64_t chunk = std::clamp<std::uint64_t>(o.chunk_elements, 1, s.max_numel);
  return std::uint64_t(std::max(1, o.chunks_in_flight)) * chunk * (k * s.in_elem + m * s.out_elem);
}

// One chunk of one tensor, and the buffer (slot) holding its bytes through the pipeline.
struct Item {
  std::size_t tensor = 0;
  std::uint64_t begin = 0, count = 0;  // elements
  std::size_t slot = 0;
};

}  // namespace

std::uint64_t engine_buffer_bytes(const MergePlan& plan, std::span<CheckpointReader* const> inputs,
                                  std::size_t outputs, const EngineOptions& options) {
  return buffer_bytes(max_sizes(plan, inputs), inputs.size(), outputs, options);
}

EngineStats merge_checkpoints(std::span<CheckpointReader* const> inputs, std::span<const double> weights,
                              std::span<CheckpointWriter* const> outputs, const MergePlan& plan,
                              kernels::MergeBackend& backend, const EngineOptions& options) {
  const std::size_t k = inputs.size(), m = outputs.size();
  if (k == 0 || m == 0) throw Error("merge: needs at least one input and one output");
  if (weights.size() != k * m)
    throw Error("merge: " + std::to_string(weights.size()) + " weights given for " + std::to_string(m) +
                " outputs x " + std::to_string(k) + " inputs");
  const auto start = std::chrono::steady_clock::now();
  const Sizes sizes = max_sizes(plan, inputs);
  const std::uint64_t chunk = std::clamp<std::uint64_t>(options.chunk_elements, 1, sizes.max_numel);
  const std::size_t slots = std::size_t(std::max(1, options.chunks_in_flight));
  const std::uint64_t in_stride = chunk * sizes.in_elem, out_stride = chunk * sizes.out_elem;
  const std::uint64_t slot_bytes = k * in_stride + m * out_stride;
  // Every buffer up front: the peak is known before the first byte is read.
  std::vector<std::unique_ptr<std::byte[]>> buffers;  // not zero-filled: every byte used is read first
  for (std::size_t s = 0; s < slots; ++s) buffers.push_back(std::make_unique_for_overwrite<std::byte[]>(slot_bytes));

  for (std::size_t t = 0; t < plan.output_tensors.size(); ++t)
    if (plan.copied[t])
      spdlog::info("tensor '{}' ({}) is not averaged: copied from the newest checkpoint {}",
                   plan.output_tensors[t].name, dtype_name(plan.output_tensors[t].dtype),
                   inputs.back()->path().string());

  BoundedQueue<std::size_t> free_slots(slots);
  BoundedQueue<Item> to_compute(slots), to_write(slots);
  for (std::size_t s = 0; s < slots; ++s) free_slots.push(s);

  std::mutex error_mutex;
  std::exception_ptr error;
  auto fail = [&](std::exception_ptr e) {
    {
      std::lock_guard lock(error_mutex);
      if (!error) error = e;
    }
    free_slots.close();
    to_compute.close();
    to_write.close();
  };
  auto failed = [&] {
    std::lock_guard lock(error_mutex);
    return bool(error);
  };

  EngineStats stats;
  stats.buffer_bytes = slots * slot_bytes;
  std::atomic<std::uint64_t> read_bytes{0};

  std::thread reader([&] {
    try {
      for (std::size_t t = 0; t < plan.output_tensors.size(); ++t) {
        const TensorInfo& info = plan.output_tensors[t];
        const std::uint64_t n = info.numel();
        // A copied tensor's chunk fills the newest input's region, whatever its element size.
        const std::uint64_t step =
            plan.copied[t] ? std::max<std::uint64_t>(1, in_stride / dtype_size(info.dtype)) : chunk;
        for (std::uint64_t begin = 0; begin < n; begin += step) {
          const auto slot = free_slots.pop();
          if (!slot) return;
          Item item{t, begin, std::min(step, n - begin), *slot};
          std::byte* base = buffers[*slot].get();
          for (std::size_t j = plan.copied[t] ? k - 1 : 0; j < k; ++j) {
            const std::uint64_t es = dtype_size(inputs[j]->info(info.name).dtype);
            inputs[j]->read(info.name, begin * es, {base + j * in_stride, item.count * es});
            read_bytes += item.count * es;
          }
          if (!to_compute.push(item)) return;
        }
      }
      to_compute.close();
    } catch (...) {
      fail(std::current_exception());
    }
  });

  std::thread writer([&] {
    try {
      const std::uint64_t total = plan.bytes_written_per_output * m;
      std::uint64_t done = 0;
      while (auto item = to_write.pop()) {
        if (failed()) return;
        const TensorInfo& info = plan.output_tensors[item->tensor];
        const std::uint64_t es = dtype_size(info.dtype);
        const std::byte* base = buffers[item->slot].get();
        for (std::size_t o = 0; o < m; ++o) {
          const std::byte* src = plan.copied[item->tensor] ? base + (k - 1) * in_stride : base + k * in_stride + o * out_stride;
          outputs[o]->write(info.name, item->begin * es, {src, item->count * es});
          done += item->count * es;
        }
        if (options.progress) options.progress(done, total);
        if (!free_slots.push(item->slot)) return;
      }
    } catch (...) {
      fail(std::current_exception());
    }
  });

  // The kernel runs here, between the two I/O threads.
  try {
    std::vector<kernels::MergeInput> in(k);
    std::vector<kernels::MergeOutput> out(m);
    while (auto item = to_compute.pop()) {
      if (failed()) break;
      if (!plan.copied[item->tensor]) {
        const TensorInfo& info = plan.output_tensors[item->tensor];
        std::byte* base = buffers[item->slot].get();
        for (std::size_t j = 0; j < k; ++j) in[j] = {base + j * in_stride, inputs[j]->info(info.name).dtype};
        for (std::size_t o = 0; o < m; ++o) out[o] = {base + k * in_stride + o * out_stride, info.dtype};
        backend.merge({in, weights, out, item->count, options.accumulate_f64});
      }
      if (!to_write.push(*item)) break;
    }
    to_write.close();
  } catch (...) {
    fail(std::current_exception());
  }
  reader.join();
  writer.join();
  if (error) std::rethrow_exception(error);

  stats.bytes_read = read_bytes;
  stats.bytes_written = plan.bytes_written_per_output * m;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace wsm::merger
