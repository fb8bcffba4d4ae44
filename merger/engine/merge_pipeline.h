#pragma once
// The merge engine's pipeline (wsm/merger/merge_engine.h): one reader thread, the compute loop on
// the calling thread (plus extra compute threads when the backend runs calls side by side) and one
// writer thread per output, joined by bounded queues. MergePipeline owns the buffers, the queues
// and the threads; its destructor closes the queues and joins every thread it started, so a start
// that fails half-way (a thread that cannot be created, a setup step that throws) leaks nothing.
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "merger/engine/merge_queue.h"
#include "merger/engine/page_releaser.h"
#include "wsm/merger/merge_engine.h"

namespace wsm::merger {

// Per tensor and input, the bytes in place when the reader maps them (CheckpointReader::mapped):
// those are read straight from the page cache, never copied into a buffer.
using Views = std::vector<std::vector<std::optional<std::span<const std::byte>>>>;  // [tensor][input]
Views find_views(const MergePlan& plan, std::span<CheckpointReader* const> inputs);

// Buffer layout of one pipeline slot: a region per input that some tensor must read() (inputs whose
// every tensor is mapped need none), then one region per output.
struct SlotLayout {
  std::uint64_t chunk = 1;  // elements per chunk
  std::uint64_t in_stride = 0, out_stride = 0;
  std::vector<std::optional<std::uint64_t>> input_at;  // per input: its region's offset, if buffered
  std::uint64_t outputs_at = 0, bytes = 0;
};
SlotLayout slot_layout(const MergePlan& plan, std::span<CheckpointReader* const> inputs, const Views& views,
                       std::size_t outputs, std::uint64_t chunk_elements);

class MergePipeline {
 public:
  // Allocates every buffer up front (the peak is known before the first byte is read); starts nothing.
  MergePipeline(std::span<CheckpointReader* const> inputs, std::span<const double> weights,
                std::span<CheckpointWriter* const> outputs, const MergePlan& plan, kernels::MergeBackend& backend,
                const EngineOptions& options);
  ~MergePipeline();  // closes the queues and joins whatever threads are still running
  MergePipeline(const MergePipeline&) = delete;
  MergePipeline& operator=(const MergePipeline&) = delete;

  // Runs the pipeline to the end; throws the first error of any stage after stopping the others.
  EngineStats run();

 private:
  // One chunk of one tensor, and the buffer (slot) holding its bytes through the pipeline.
  struct Item {
    std::size_t tensor = 0;
    std::uint64_t begin = 0, count = 0;  // elements
    std::size_t slot = 0;
  };

  void start_threads();
  template <class Body>
  void start(const char* role, Body body);
  void read_loop();
  void read_chunk(const Item& item);
  void compute_loop();
  void compute_chunk(const Item& item, std::vector<kernels::MergeInput>& in, std::vector<kernels::MergeOutput>& out);
  void write_loop(std::size_t o);
  void write_chunk(std::size_t o, const Item& item);
  void release_chunk(const Item& item);
  void join_all();

  // Where input j's bytes for an item are: in place in its mapping, or in the slot's buffer.
  const std::byte* input_bytes(const Item& item, std::size_t j) const;
  std::span<const std::byte> input_range(const Item& item, std::size_t j) const;
  std::size_t first_input(const Item& item) const;  // copied tensors read the newest input only
  std::uint64_t input_elem(const Item& item, std::size_t j) const;
  std::byte* output_bytes(const Item& item, std::size_t o) const;

  void fail(std::exception_ptr e);  // records the first error and stops every stage
  bool failed() const { return stopped_; }
  void stop();  // closes every queue: blocked stages wake, loops end

  std::span<CheckpointReader* const> inputs_;
  std::span<const double> weights_;
  std::span<CheckpointWriter* const> outputs_;
  const MergePlan& plan_;
  kernels::MergeBackend& backend_;
  const EngineOptions& options_;
  const std::size_t k_, m_;
  const Views views_;
  const SlotLayout layout_;
  const std::size_t slots_;
  const int workers_;  // compute threads, the calling thread included

  std::vector<std::unique_ptr<std::byte[]>> buffers_;  // per slot; not zero-filled: every byte used is read first
  BoundedQueue<std::size_t> free_slots_;
  BoundedQueue<Item> to_compute_;
  std::vector<std::unique_ptr<BoundedQueue<Item>>> to_write_;  // one per output, each with its own writer thread
  std::vector<std::atomic<std::size_t>> writes_left_;          // per slot: outputs not yet written from it
  std::atomic<int> computing_;                                  // compute loops still running

  std::mutex error_mutex_;  // guards error_ (the first failure of any thread)
  std::exception_ptr error_;
  std::atomic<bool> stopped_{false};
  std::mutex progress_mutex_;  // guards written_ and the progress callback's calls
  std::uint64_t written_ = 0;
  std::atomic<std::uint64_t> read_bytes_{0};
  std::vector<std::vector<FiniteScan>> nonfinite_;  // [output][tensor]: each writer thread its own row
  PageReleaser finished_pages_;                     // mapped input pages every output is done with

  std::vector<std::jthread> threads_;  // last member: joined (by the destructor) before the rest goes
};

}  // namespace wsm::merger
