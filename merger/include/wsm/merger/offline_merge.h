#pragma once
// Offline merge of checkpoint files (`wsm merge`): orders the inputs by recorded step, picks the
// window and the weights of every requested shape (schedules/), validates before creating anything,
// then streams all outputs at once through merge_engine.h, each with its provenance, atomically.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wsm/merger/merge_engine.h"
#include "wsm/merger/provenance.h"
#include "wsm/merger/rank_group.h"
#include "wsm/schedules/decay.h"

namespace wsm::merger {

// Elements per chunk for a backend: 256 Ki on the CPU, so a chunk's buffers stay in the caches;
// 16 Mi on a GPU, so each host-device transfer is long.
std::uint64_t default_chunk_elements(kernels::BackendKind backend);

struct OfflineMergeRequest {
  std::vector<std::filesystem::path> inputs;  // any order: sorted by step (see input_steps)
  // Empty, or one per input: a step given explicitly (PATH@STEP) overrides what the input records
  // (its metadata, or its folder: trainer_folder.h). Inputs without any step keep the order given
  // only when every shape weights them equally; otherwise planning throws.
  std::vector<std::optional<std::int64_t>> input_steps;
  std::vector<MergeSpec> specs;               // one output each
  std::vector<std::filesystem::path> outputs;  // one per spec
  std::optional<std::int64_t> window_steps;   // window over recorded steps ...
  std::optional<std::int64_t> window_tokens;  // ... or over recorded tokens (not both)
  std::optional<DType> dtype;                 // float tensors' output dtype; default: the newest input's
  kernels::BackendKind backend = kernels::BackendKind::cpu;
  bool accumulate_f64 = false;
  std::uint64_t chunk_elements = default_chunk_elements(kernels::BackendKind::cpu);  // per tensor piece
  // Directory outputs: shards of at most this many bytes (0: one shard, or kHfDefaultShardBytes when
  // the newest input is a Hugging Face model directory, whose config and tokenizer files are then
  // copied into every output directory). Giving it with a file output is an error.
  std::uint64_t shard_bytes = 0;
};

struct OfflineInput {
  std::filesystem::path path;
  std::optional<std::int64_t> step, tokens;
  std::uint64_t bytes = 0;
  std::string step_source;  // "given" (PATH@STEP), "metadata", "trainer_state.json", "folder name", ...
};

// What will happen, decided and validated before anything is written (what --dry-run prints).
struct OfflinePlan {
  std::vector<OfflineInput> inputs;    // ordered oldest first
  std::vector<std::size_t> used;       // indices into inputs merged (the union of all windows)
  std::vector<std::vector<double>> weights;  // per output, one weight per used input
  std::vector<std::string> sampling;   // per output: the sampling rule applied
  MergePlan merge;                     // tensors, bytes
  std::uint64_t buffer_bytes = 0;      // engine memory
  std::string describe(const OfflineMergeRequest& request) const;  // human-readable plan
};

// Opens the inputs (metadata only), orders them, selects windows and weights, validates tensors.
// Throws wsm::Error naming the file or tensor at fault; creates nothing.
OfflinePlan plan_offline_merge(const OfflineMergeRequest& request);

// What one rank did: its share of the bytes and its time in the merge engine.
struct RankStats {
  std::uint64_t bytes_read = 0, bytes_written = 0;
  double seconds = 0;
};

struct OfflineResult {
  OfflinePlan plan;
  EngineStats stats;              // this rank's engine stats
  std::vector<RankStats> ranks;   // every rank's, in rank order (the same on every rank)
  double seconds = 0;             // wall time of the whole merge, planning to publication
  std::string backend;
};

// Plans, merges and commits every output (all or none), as one rank of `group`: every rank plans
// (headers only) and must plan the same merge; rank 0 lays out every output under its temporary
// name; each rank merges its share of the bytes (work_split.h), reading only that part of every
// input and writing it in place; rank 0 publishes once every rank has written and synced its part.
// A failure on any rank is thrown on every rank ("rank R of N: ..."), and no output appears.
// `progress` as in EngineOptions (this rank's bytes).
OfflineResult run_offline_merge(const OfflineMergeRequest& request, RankGroup& group,
                                std::function<void(std::uint64_t, std::uint64_t)> progress = {});
// The same as one process.
OfflineResult run_offline_merge(const OfflineMergeRequest& request,
                                std::function<void(std::uint64_t, std::uint64_t)> progress = {});

// A file-name stem for a spec's output ("1-sqrt", "cosine_floor_0.1"): its text form with every
// character outside [A-Za-z0-9._-] replaced by '_' (wsm::file_name_safe).
std::string output_stem(const MergeSpec& spec);

// The provenance of output `o` (written into its metadata by provenance_metadata()).
Provenance merge_provenance(const OfflineMergeRequest& request, const OfflinePlan& plan, std::size_t o);

}  // namespace wsm::merger
