#pragma once
// Emission planning: when an output is due, and which checkpoints with which weights make each
// emulation's merged model. One job covers every emulation due at a step, so the runner reads the
// window once for all of them.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "merger/daemon/emulation.h"
#include "merger/daemon/output_format.h"
#include "merger/daemon/sum_model.h"
#include "merger/daemon/window_store.h"
#include "wsm/core/dtype.h"

namespace wsm::merger {

struct EmissionOutput {
  Emulation emulation;
  std::vector<double> weights;             // one per job input (0 where unused), sums to 1
  std::vector<std::int64_t> source_steps;  // the checkpoints this output uses, oldest first
  std::vector<std::int64_t> source_tokens;
  std::vector<double> source_weights;
  std::filesystem::path path;
};

// An emulation kept as a running sum (running_sum.h): its selection now, and whether its output
// is due at this step (else the job only brings the sum up to date).
struct SumItem {
  EmissionOutput output;        // provenance and path; output.weights is unused
  std::vector<Entry> members;   // the selection, oldest first
  std::vector<double> weights;  // c_j per member
  SumModel model;
  bool emit = false;
};

struct EmissionJob {
  std::string run_id;
  std::int64_t step = 0;  // newest checkpoint in the window
  std::int64_t tokens = 0;
  std::vector<Entry> inputs;  // union of every output's sources, oldest first
  std::vector<EmissionOutput> outputs;
  std::optional<DType> dtype;  // empty: each tensor keeps its input dtype
  OutputFormatOptions output;  // file format of every output (apply_output_format)
  std::vector<SumItem> sums;      // running-sum emulations (periodic jobs only)
  std::vector<Entry> context;     // the run's window at this step plus what it just dropped: where
                                  // a running sum finds the checkpoints leaving it
  // Emulations left out because the window cannot give them weights (a weights=/decay= table that
  // does not fit the checkpoints selected, positions that do not increase), one line each.
  std::vector<std::string> skipped;
  // A sharded run: the layout of this node's part; outputs are part files in a step directory.
  std::shared_ptr<const PartLayout> part;
  std::shared_ptr<const ModelMetadata> model;  // the newest checkpoint's model metadata, into every output
  std::uint64_t request_id = 0;  // > 0: an on-demand MergeRequest
  std::string requester;         // its peer
};

// Periodic rule: an output is due at the first checkpoint of each multiple of `every` steps,
// i.e. when step / every grows past previous_step / every (previous_step < 0: none yet).
bool emission_due(std::int64_t previous_step, std::int64_t step, std::int64_t every);

// The job for `emulations` over the current window of run_id; outputs go to
// out_dir/<run>/<label>/step_<step>.h5, or for a sharded run this node's part
// out_dir/<run>/<label>/step_<step>/part-rank<R>.h5 (multipart_checkpoint.h). Emulations whose window is not covered are left out;
// those the window cannot weight are left out and named in job.skipped (never thrown).
EmissionJob plan_emission(const WindowStore& store, const std::string& run_id,
                          const std::vector<Emulation>& emulations, const std::filesystem::path& out_dir,
                          std::optional<DType> dtype, bool require_covered = true);

// Moves the outputs whose weights a running sum reproduces (sum_model) into job.sums, each marked
// emit = due; drops the other outputs when not due; and trims job.inputs to what the remaining
// full merges read. `dropped`: what the window just dropped (becomes part of job.context).
void split_running_sums(EmissionJob& job, bool due, const std::vector<Entry>& window,
                        const std::vector<Entry>& dropped);

// True when the job writes something (a full-merge output or a due running sum).
bool writes_output(const EmissionJob& job);

}  // namespace wsm::merger
