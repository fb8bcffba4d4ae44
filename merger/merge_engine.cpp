#include "wsm/merger/merge_engine.h"

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
#include "wsm/core/error.h"
#include "wsm/formats/mapped_file.h"

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

// Per tensor and input, the bytes in place when the reader maps them (CheckpointReader::mapped):
// those are read straight from the page cache, never copied into a buffer.
using Views = std::vector<std::vector<std::optional<std::span<const std::byte>>>>;  // [tensor][input]
Views find_views(const MergePlan& plan, std::span<CheckpointReader* const> inputs) {
  Views v(plan.output_tensors.size(), std::vector<std::optional<std::span<const std::byte>>>(inputs.size()));
  for (std::size_t t = 0; t < plan.output_tensors.size(); ++t)
    for (std::size_t j = plan.copied[t] ? inputs.size() - 1 : 0; j < inputs.size(); ++j)
      v[t][j] = inputs[j]->mapped(plan.output_tensors[t].name);
  return v;
}

// Buffer layout of one pipeline slot: a region per input that some tensor must read() (inputs whose
// every tensor is mapped need none), then one region per output.
struct SlotLayout {
  std::uint64_t chunk = 1;                   // elements per chunk
  std::uint64_t in_stride = 0, out_stride = 0;
  std::vector<std::optional<std::uint64_t>> input_at;  // per input: its region's offset, if buffered
  std::uint64_t outputs_at = 0, bytes = 0;
};
SlotLayout slot_layout(const MergePlan& plan, std::span<CheckpointReader* const> inputs, const Views& views,
                       std::size_t m, std::uint64_t chunk_elements) {
  const Sizes s = max_sizes(plan, inputs);
  SlotLayout l;
  l.chunk = std::clamp<std::uint64_t>(chunk_elements, 1, s.max_numel);
  l.in_stride = l.chunk * s.in_elem;
  l.out_stride = l.chunk * s.out_elem;
  l.input_at.resize(inputs.size());
  for (std::size_t j = 0; j < inputs.size(); ++j) {
    bool buffered = false;
    for (std::size_t t = 0; t < views.size(); ++t)
      buffered |= (!plan.copied[t] || j + 1 == inputs.size()) && !views[t][j];
    if (buffered) {
      l.input_at[j] = l.outputs_at;
      l.outputs_at += l.in_stride;
    }
  }
  l.bytes = l.outputs_at + m * l.out_stride;
  return l;
}

// One chunk of one tensor, and the buffer (slot) holding its bytes through the pipeline.
struct Item {
  std::size_t tensor = 0;
  std::uint64_t begin = 0, count = 0;  // elements
  std::size_t slot = 0;
};

// Below this, a chunk's pages are left to the page-fault path: a system call costs more.
constexpr std::uint64_t kPageHintBytes = 64u << 10;

}  // namespace

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
  const auto start = std::chrono::steady_clock::now();
  const Views views = find_views(plan, inputs);
  const SlotLayout layout = slot_layout(plan, inputs, views, m, options.chunk_elements);
  const std::size_t slots = std::size_t(std::max(1, options.chunks_in_flight));
  // Every buffer up front: the peak is known before the first byte is read.
  std::vector<std::unique_ptr<std::byte[]>> buffers;  // not zero-filled: every byte used is read first
  for (std::size_t s = 0; s < slots; ++s) buffers.push_back(std::make_unique_for_overwrite<std::byte[]>(layout.bytes));

  for (std::size_t t = 0; t < plan.output_tensors.size(); ++t)
    if (plan.copied[t])
      spdlog::info("tensor '{}' ({}) is not averaged: copied from the newest checkpoint {}",
                   plan.output_tensors[t].name, dtype_name(plan.output_tensors[t].dtype),
                   inputs.back()->path().string());

  // Where input j's bytes for an item are: in place in its mapping, or in the slot's buffer.
  auto input_bytes = [&](const Item& item, std::size_t j) -> const std::byte* {
    const std::uint64_t es = dtype_size(inputs[j]->info(plan.output_tensors[item.tensor].name).dtype);
    if (const auto& v = views[item.tensor][j]) return v->data() + item.begin * es;
    return buffers[item.slot].get() + *layout.input_at[j];
  };
  auto input_range = [&](const Item& item, std::size_t j) -> std::span<const std::byte> {
    const std::uint64_t es = dtype_size(inputs[j]->info(plan.output_tensors[item.tensor].name).dtype);
    return {input_bytes(item, j), item.count * es};
  };
  auto first_input = [&](const Item& item) { return plan.copied[item.tensor] ? k - 1 : 0; };

  BoundedQueue<std::size_t> free_slots(slots);
  BoundedQueue<Item> to_compute(slots);
  std::vector<std::unique_ptr<BoundedQueue<Item>>> to_write;  // one per output, each with its own writer thread
  for (std::size_t o = 0; o < m; ++o) to_write.push_back(std::make_unique<BoundedQueue<Item>>(slots));
  std::vector<std::atomic<std::size_t>> writes_left(slots);  // per slot: outputs not yet written from it
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
    for (auto& q : to_write) q->close();
  };
  auto failed = [&] {
    std::lock_guard lock(error_mutex);
    return bool(error);
  };

  EngineStats stats;
  stats.buffer_bytes = slots * layout.bytes;
  stats.nonfinite.assign(m, std::vector<FiniteScan>(plan.output_tensors.size()));  // each writer thread its own row
  std::atomic<std::uint64_t> read_bytes{0};

  // Reader: copies what is not mapped into the slot, and faults in the mapped pages of the chunk
  // ahead of the kernel, so page faults overlap the compute of the previous chunk.
  std::thread reader([&] {
    try {
      for (std::size_t t = 0; t < plan.output_tensors.size(); ++t) {
        const TensorInfo& info = plan.output_tensors[t];
        const std::uint64_t n = info.numel();
        // A copied tensor's chunk fills one input region, whatever its element size.
        const std::uint64_t step =
            plan.copied[t] ? std::max<std::uint64_t>(1, layout.in_stride / dtype_size(info.dtype)) : layout.chunk;
        for (std::uint64_t begin = 0; begin < n; begin += step) {
          const auto slot = free_slots.pop();
          if (!slot) return;
          Item item{t, begin, std::min(step, n - begin), *slot};
          for (std::size_t j = first_input(item); j < k; ++j) {
            const std::uint64_t es = dtype_size(inputs[j]->info(info.name).dtype);
            if (views[t][j]) {
              if (item.count * es >= kPageHintBytes) prefetch_mapped(input_range(item, j));
            } else {
              inputs[j]->read(info.name, begin * es, {buffers[*slot].get() + *layout.input_at[j], item.count * es});
            }
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

  // Writers, one thread per output (outputs are separate files, written side by side). The last one
  // done with a chunk lets the chunk's mapped input pages go and hands its slot back to the reader.
  std::mutex progress_mutex;
  std::uint64_t written = 0;
  auto write_output = [&](std::size_t o) {
    try {
      while (auto item = to_write[o]->pop()) {
        if (failed()) return;
        const TensorInfo& info = plan.output_tensors[item->tensor];
        const std::uint64_t es = dtype_size(info.dtype);
        const std::byte* src = plan.copied[item->tensor]
                                   ? input_bytes(*item, k - 1)
                                   : buffers[item->slot].get() + layout.outputs_at + o * layout.out_stride;
        outputs[o]->write(info.name, item->begin * es, {src, item->count * es});
        if (is_float(info.dtype))  // the chunk was just computed: it is in cache
          add_scan(stats.nonfinite[o][item->tensor], scan_nonfinite(info.dtype, {src, item->count * es}, item->begin));
        if (options.progress) {
          std::lock_guard lock(progress_mutex);
          written += item->count * es;
          options.progress(written, plan.bytes_written_per_output * m);
        }
        if (--writes_left[item->slot] > 0) continue;
        for (std::size_t j = first_input(*item); j < k; ++j)
          if (views[item->tensor][j] && item->count * es >= kPageHintBytes) release_mapped(input_range(*item, j));
        if (!free_slots.push(item->slot)) return;
      }
    } catch (...) {
      fail(std::current_exception());
    }
  };
  std::vector<std::thread> writers;
  for (std::size_t o = 0; o < m; ++o) writers.emplace_back(write_output, o);

  // The kernel runs here, between the two I/O threads, and on more compute threads when the backend
  // runs calls side by side (the CPU: one single-threaded call per core, no barrier between chunks).
  const int workers = std::max(1, backend.concurrent_calls());
  std::atomic<int> computing{workers};
  auto compute = [&] {
    try {
      std::vector<kernels::MergeInput> in(k);
      std::vector<kernels::MergeOutput> out(m);
      while (auto item = to_compute.pop()) {
        if (failed()) break;
        if (!plan.copied[item->tensor]) {
          const TensorInfo& info = plan.output_tensors[item->tensor];
          std::byte* base = buffers[item->slot].get();
          for (std::size_t j = 0; j < k; ++j) in[j] = {input_bytes(*item, j), inputs[j]->info(info.name).dtype};
          for (std::size_t o = 0; o < m; ++o) out[o] = {base + layout.outputs_at + o * layout.out_stride, info.dtype};
          backend.merge({in, weights, out, item->count, options.accumulate_f64, workers > 1 ? 1 : 0});
        }
        writes_left[item->slot] = m;
        bool open = true;
        for (auto& q : to_write) open = open && q->push(*item);
        if (!open) break;
      }
    } catch (...) {
      fail(std::current_exception());
    }
    if (--computing == 0)  // the last compute thread out ends the writers' input
      for (auto& q : to_write) q->close();
  };
  std::vector<std::thread> helpers;
  for (int w = 1; w < workers; ++w) helpers.emplace_back(compute);
  compute();
  for (auto& h : helpers) h.join();
  reader.join();
  for (auto& w : writers) w.join();
  if (error) std::rethrow_exception(error);

  stats.bytes_read = read_bytes;
  stats.bytes_written = plan.bytes_written_per_output * m;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace wsm::merger
