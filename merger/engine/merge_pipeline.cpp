#include "merger/engine/merge_pipeline.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "wsm/formats/mapped_file.h"

namespace wsm::merger {
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

// Below this, a chunk's pages are left to the page-fault path: a system call costs more.
constexpr std::uint64_t kPageHintBytes = 64u << 10;
// Finished mapped pages are let go of in batches of this many bytes (PageReleaser).
constexpr std::uint64_t kReleaseBatchBytes = 16u << 20;

}  // namespace

Views find_views(const MergePlan& plan, std::span<CheckpointReader* const> inputs) {
  Views v(plan.output_tensors.size(), std::vector<std::optional<std::span<const std::byte>>>(inputs.size()));
  for (std::size_t t = 0; t < plan.output_tensors.size(); ++t)
    for (std::size_t j = plan.copied[t] ? inputs.size() - 1 : 0; j < inputs.size(); ++j)
      v[t][j] = inputs[j]->mapped(plan.output_tensors[t].name);
  return v;
}

SlotLayout slot_layout(const MergePlan& plan, std::span<CheckpointReader* const> inputs, const Views& views,
                       std::size_t outputs, std::uint64_t chunk_elements) {
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
  l.bytes = l.outputs_at + outputs * l.out_stride;
  return l;
}

MergePipeline::MergePipeline(std::span<CheckpointReader* const> inputs, std::span<const double> weights,
                             std::span<CheckpointWriter* const> outputs, const MergePlan& plan,
                             kernels::MergeBackend& backend, const EngineOptions& options)
    : inputs_(inputs),
      weights_(weights),
      outputs_(outputs),
      plan_(plan),
      backend_(backend),
      options_(options),
      k_(inputs.size()),
      m_(outputs.size()),
      views_(find_views(plan, inputs)),
      layout_(slot_layout(plan, inputs, views_, m_, options.chunk_elements)),
      slots_(std::size_t(std::max(1, options.chunks_in_flight))),
      workers_(std::max(1, backend.concurrent_calls())),
      free_slots_(slots_),
      to_compute_(slots_),
      writes_left_(slots_),
      computing_(workers_),
      nonfinite_(m_, std::vector<FiniteScan>(plan.output_tensors.size())),
      finished_pages_(kReleaseBatchBytes) {
  for (std::size_t s = 0; s < slots_; ++s) buffers_.push_back(std::make_unique_for_overwrite<std::byte[]>(layout_.bytes));
  for (std::size_t o = 0; o < m_; ++o) to_write_.push_back(std::make_unique<BoundedQueue<Item>>(slots_));
  for (std::size_t s = 0; s < slots_; ++s) free_slots_.push(s);
}

MergePipeline::~MergePipeline() {
  // After run() every thread is joined already; after a failed start the running ones wait on a
  // queue: closing them all lets each loop end, then the jthreads join.
  stop();
  join_all();
}

EngineStats MergePipeline::run() {
  const auto start_time = std::chrono::steady_clock::now();
  for (std::size_t t = 0; t < plan_.output_tensors.size(); ++t)
    if (plan_.copied[t])
      spdlog::info("tensor '{}' ({}) is not averaged: copied from the newest checkpoint {}",
                   plan_.output_tensors[t].name, dtype_name(plan_.output_tensors[t].dtype),
                   inputs_.back()->path().string());
  start_threads();
  compute_loop();  // the kernel runs here too, between the two I/O threads
  join_all();
  finished_pages_.flush();
  if (error_) std::rethrow_exception(error_);

  EngineStats stats;
  stats.buffer_bytes = slots_ * layout_.bytes;
  stats.nonfinite = std::move(nonfinite_);
  stats.bytes_read = read_bytes_;
  stats.bytes_written = plan_.bytes_written_per_output * m_;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  return stats;
}

// Reader, writers, then the extra compute threads (the CPU backend: one single-threaded call per
// core, no barrier between chunks). A throw here leaves the started ones to the destructor.
void MergePipeline::start_threads() {
  start("reader", [this] { read_loop(); });
  for (std::size_t o = 0; o < m_; ++o) start("writer", [this, o] { write_loop(o); });
  for (int w = 1; w < workers_; ++w) start("compute", [this] { compute_loop(); });
}

template <class Body>
void MergePipeline::start(const char* role, Body body) {
  if (options_.before_thread_start) options_.before_thread_start(role);
  threads_.emplace_back(std::move(body));
}

void MergePipeline::join_all() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

// Copies what is not mapped into the slot, and faults in the mapped pages of the chunk ahead of
// the kernel, so page faults overlap the compute of the previous chunk.
void MergePipeline::read_loop() {
  try {
    for (std::size_t t = 0; t < plan_.output_tensors.size(); ++t) {
      const TensorInfo& info = plan_.output_tensors[t];
      const std::uint64_t n = info.numel();
      // A copied tensor's chunk fills one input region, whatever its element size.
      const std::uint64_t step =
          plan_.copied[t] ? std::max<std::uint64_t>(1, layout_.in_stride / dtype_size(info.dtype)) : layout_.chunk;
      for (std::uint64_t begin = 0; begin < n; begin += step) {
        const auto slot = free_slots_.pop();
        if (!slot) return;
        const Item item{t, begin, std::min(step, n - begin), *slot};
        read_chunk(item);
        if (!to_compute_.push(item)) return;
      }
    }
    to_compute_.close();
  } catch (...) {
    fail(std::current_exception());
  }
}

void MergePipeline::read_chunk(const Item& item) {
  const std::string& name = plan_.output_tensors[item.tensor].name;
  for (std::size_t j = first_input(item); j < k_; ++j) {
    const std::uint64_t es = input_elem(item, j);
    if (views_[item.tensor][j]) {
      if (item.count * es >= kPageHintBytes) prefetch_mapped(input_range(item, j));
    } else {
      inputs_[j]->read(name, item.begin * es,
                       {buffers_[item.slot].get() + *layout_.input_at[j], item.count * es});
    }
    read_bytes_ += item.count * es;
  }
}

void MergePipeline::compute_loop() {
  try {
    std::vector<kernels::MergeInput> in(k_);
    std::vector<kernels::MergeOutput> out(m_);
    while (auto item = to_compute_.pop()) {
      if (failed()) break;
      compute_chunk(*item, in, out);
      writes_left_[item->slot] = m_;
      bool open = true;
      for (auto& q : to_write_) open = open && q->push(*item);
      if (!open) break;
    }
  } catch (...) {
    fail(std::current_exception());
  }
  if (--computing_ == 0)  // the last compute loop out ends the writers' input
    for (auto& q : to_write_) q->close();
}

void MergePipeline::compute_chunk(const Item& item, std::vector<kernels::MergeInput>& in,
                                  std::vector<kernels::MergeOutput>& out) {
  if (plan_.copied[item.tensor]) return;  // written straight from the newest input's bytes
  const TensorInfo& info = plan_.output_tensors[item.tensor];
  for (std::size_t j = 0; j < k_; ++j) in[j] = {input_bytes(item, j), inputs_[j]->info(info.name).dtype};
  for (std::size_t o = 0; o < m_; ++o) out[o] = {output_bytes(item, o), info.dtype};
  backend_.merge({in, weights_, out, item.count, options_.accumulate_f64, workers_ > 1 ? 1 : 0});
}

// One thread per output (outputs are separate files, written side by side). The last one done
// with a chunk lets the chunk's mapped input pages go and hands its slot back to the reader.
void MergePipeline::write_loop(std::size_t o) {
  try {
    while (auto item = to_write_[o]->pop()) {
      if (failed()) return;
      write_chunk(o, *item);
      if (--writes_left_[item->slot] > 0) continue;
      release_chunk(*item);
      if (!free_slots_.push(item->slot)) return;
    }
  } catch (...) {
    fail(std::current_exception());
  }
}

void MergePipeline::write_chunk(std::size_t o, const Item& item) {
  const TensorInfo& info = plan_.output_tensors[item.tensor];
  const std::uint64_t es = dtype_size(info.dtype);
  const std::byte* src = plan_.copied[item.tensor] ? input_bytes(item, k_ - 1) : output_bytes(item, o);
  outputs_[o]->write(info.name, item.begin * es, {src, item.count * es});
  if (is_float(info.dtype))  // the chunk was just computed: it is in cache
    add_scan(nonfinite_[o][item.tensor], scan_nonfinite(info.dtype, {src, item.count * es}, item.begin));
  if (options_.progress) {
    std::lock_guard lock(progress_mutex_);
    written_ += item.count * es;
    options_.progress(written_, plan_.bytes_written_per_output * m_);
  }
}

void MergePipeline::release_chunk(const Item& item) {
  for (std::size_t j = first_input(item); j < k_; ++j)
    if (views_[item.tensor][j]) finished_pages_.add(input_range(item, j));
}

std::uint64_t MergePipeline::input_elem(const Item& item, std::size_t j) const {
  return dtype_size(inputs_[j]->info(plan_.output_tensors[item.tensor].name).dtype);
}

const std::byte* MergePipeline::input_bytes(const Item& item, std::size_t j) const {
  if (const auto& v = views_[item.tensor][j]) return v->data() + item.begin * input_elem(item, j);
  return buffers_[item.slot].get() + *layout_.input_at[j];
}

std::span<const std::byte> MergePipeline::input_range(const Item& item, std::size_t j) const {
  return {input_bytes(item, j), item.count * input_elem(item, j)};
}

std::size_t MergePipeline::first_input(const Item& item) const { return plan_.copied[item.tensor] ? k_ - 1 : 0; }

std::byte* MergePipeline::output_bytes(const Item& item, std::size_t o) const {
  return buffers_[item.slot].get() + layout_.outputs_at + o * layout_.out_stride;
}

void MergePipeline::fail(std::exception_ptr e) {
  {
    std::lock_guard lock(error_mutex_);
    if (!error_) error_ = e;
  }
  stop();
}

void MergePipeline::stop() {
  stopped_ = true;
  free_slots_.close();
  to_compute_.close();
  for (auto& q : to_write_) q->close();
}

}  // namespace wsm::merger
