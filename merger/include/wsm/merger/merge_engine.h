#pragma once
// The checkpoint-level merge engine, reusable by the offline `wsm merge` and by the daemon:
// K readers (oldest first) -> M writers, tensor by tensor and chunk by chunk: a reader thread, the
// kernel on the calling thread (plus one more compute thread per extra core when the backend runs
// calls side by side) and one writer thread per output, joined by bounded queues, so reading,
// computing and writing overlap and memory stays at `buffer_bytes` whatever the checkpoint size.
// Inputs whose bytes the reader maps (CheckpointReader::mapped) are read in place, not copied: the
// reader thread only faults their pages in ahead of the kernel, and the writer drops them after.
//
// Float tensors (f32/f16/bf16/f64, mixed allowed) are merged by a kernels::MergeBackend. Integer
// and bool tensors are never averaged: they are copied from the newest input (said so in the log).
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "wsm/kernels/merge.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/formats/tensor_convert.h"

namespace wsm::merger {

struct MergePlan {
  std::vector<TensorInfo> output_tensors;  // the newest input's order; float tensors in the output dtype
  std::vector<bool> copied;                // per tensor: integer/bool, copied from the newest input
  std::uint64_t bytes_read = 0;            // over all inputs (copied tensors: newest only)
  std::uint64_t bytes_written_per_output = 0;

  std::vector<std::string> copied_names() const;  // the copied tensors' names, as provenance records them
};

// Checks that every input holds the same tensor names and shapes, float tensors float everywhere and
// integer/bool tensors of one dtype everywhere; fails closed with a wsm::Error naming the file and
// tensor at fault. out_dtype (a float dtype) overrides the float tensors' dtype, else the newest's.
MergePlan plan_merge(std::span<CheckpointReader* const> inputs, std::optional<DType> out_dtype);

struct EngineOptions {
  std::uint64_t chunk_elements = 1u << 18;  // elements per tensor chunk: sizes every buffer (cache-sized)
  int chunks_in_flight = 4;                 // buffers cycling between reader, compute threads, writer
  bool accumulate_f64 = false;
  // Called from the writer thread after each chunk: output bytes done, output bytes in total.
  std::function<void(std::uint64_t done, std::uint64_t total)> progress;
  // Test hook: called on the calling thread before each pipeline thread starts, with its role
  // ("reader", "writer", "compute"); a throw is a failed start (the engine stops, joins what it
  // started and rethrows).
  std::function<void(std::string_view role)> before_thread_start;
};

// Memory the engine allocates for these inputs and M outputs (all buffers, allocated up front).
std::uint64_t engine_buffer_bytes(const MergePlan& plan, std::span<CheckpointReader* const> inputs,
                                  std::size_t outputs, const EngineOptions& options);

struct EngineStats {
  std::uint64_t bytes_read = 0, bytes_written = 0, buffer_bytes = 0;
  double seconds = 0;
  // [output][tensor]: NaN/Inf in the float tensors written (inputs' NaN/Inf propagate through any
  // nonzero weight; a cast to a narrower dtype can overflow to Inf). Callers warn about them.
  std::vector<std::vector<FiniteScan>> nonfinite;
};

// Merges `inputs` (oldest first) with `weights` (M x K, row-major: weights[m*K + j]) into `outputs`,
// writers created with plan.output_tensors. The caller commits the writers afterwards (so several
// outputs appear together, or none). Throws the first error of any stage after stopping the others.
EngineStats merge_checkpoints(std::span<CheckpointReader* const> inputs, std::span<const double> weights,
                              std::span<CheckpointWriter* const> outputs, const MergePlan& plan,
                              kernels::MergeBackend& backend, const EngineOptions& options = {});

}  // namespace wsm::merger
