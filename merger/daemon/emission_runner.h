#pragma once
// Executes an emission: one pass over the job's inputs for all outputs at once, through the shared
// merge engine (merge_engine.h: chunked, kernels/, integer and bool tensors copied from the newest
// checkpoint). Each output is written atomically with its provenance metadata; all or none commit.
#include <cstddef>
#include <string>
#include <vector>

#include "wsm/kernels/merge.h"
#include "wsm/merger/provenance.h"
#include "merger/daemon/emission.h"
#include "merger/daemon/output_record.h"
#include "wsm/merger/merge_engine.h"

namespace wsm::merger {

struct RunnerOptions {
  std::uint64_t chunk_elements = EngineOptions{}.chunk_elements;  // bounds the engine's buffers
  bool accumulate_f64 = false;
  // The output index's file name in out_dir: daemons of one sharded job sharing out_dir keep one each.
  std::string index_name = "index.json";
};

// Returns one index record per output written (see output_index.h). Throws wsm::Error when the
// inputs' manifests differ or a file cannot be read or written; nothing partial is left behind.
std::vector<OutputRecord> run_emission(const EmissionJob& job, kernels::MergeBackend& backend,
                                       const RunnerOptions& options = {});

// The index record of an output written by `method` ("full-merge", or a running sum's model): the
// one place a written output's record is built.
OutputRecord output_record(const EmissionJob& job, const EmissionOutput& out, std::string method);

// The provenance written into each output's metadata (wsm/merger/provenance.h). `method` is
// "full-merge" or "running-sum (...)"; `accumulate` "f32" or "f64"; `copied` the integer/bool tensors
// copied from the newest input (MergePlan::copied_names).
Provenance emission_provenance(const EmissionJob& job, const EmissionOutput& out, std::string method,
                               std::string accumulate, std::vector<std::string> copied = {});
// An output's metadata: the run's model metadata (job.model), its provenance (whose keys win) and, for a
// sharded run, its part layout (wsm/formats/part_layout.h).
std::map<std::string, std::string> emission_metadata(const EmissionJob& job, const EmissionOutput& out,
                                                     std::string method, std::string accumulate,
                                                     std::vector<std::string> copied = {});

}  // namespace wsm::merger
