#pragma once
// Incremental running sums (docs/protocol.md, "Running sums"): per (run, emulation) an f64 sum
// over the window's tail, V = sum_j ratio^(newest-j) * theta_j, brought up to date from only the
// checkpoints that arrive in or leave the tail, so an emission reads O(1) checkpoints instead of
// the whole window. Output = c_newest * V (+ c_0 * theta_0 for EMA), rounded once to the output
// dtype. Integer/bool tensors are copied from the newest checkpoint. Runs on the emission worker
// thread only (not thread-safe apart from bytes()).
#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "merger/daemon/emission.h"
#include "merger/daemon/output_record.h"
#include "merger/daemon/running_sum_plan.h"

namespace wsm::merger {

struct RunningSumOptions {
  // A full recompute from the window every this many incremental updates bounds f64 drift
  // (each update adds at most ~1 ulp of f64 per element; 64 updates stay ~1e-14 relative).
  int recompute_every = 64;
  std::uint64_t chunk_elements = 1u << 18;  // elements per tensor chunk: bounds the read buffers
};

class RunningSums {
 public:
  explicit RunningSums(RunningSumOptions options = {}) : options_(options) {}

  // Brings the sum of item's emulation in job.run_id to item.members, reading only what changed
  // when it can (else recomputing from the window), and writes the output when item.emit. Returns
  // the output's index record. On error the state is forgotten (the next update recomputes).
  std::optional<OutputRecord> apply(const EmissionJob& job, const SumItem& item);

  std::uint64_t bytes() const { return bytes_.load(); }  // f64 state held, any thread
  std::uint64_t recomputes() const { return recomputes_; }
  std::uint64_t incremental_updates() const { return incremental_; }

 private:
  struct State {
    SumState sum;                           // model, steps in V, updates since the last rebuild
    std::vector<TensorInfo> tensors;        // output manifest the sums were built for
    std::vector<std::vector<double>> sums;  // per tensor; empty for copied (integer/bool) ones
    std::uint64_t bytes() const;
  };
  // Plans the update (running_sum_plan.h), then applies it to the tensors and writes the output.
  std::optional<OutputRecord> run(const EmissionJob& job, const SumItem& item, State& state);

  RunningSumOptions options_;
  std::map<std::pair<std::string, std::string>, State> states_;  // (run, label)
  std::atomic<std::uint64_t> bytes_{0};
  std::uint64_t recomputes_ = 0, incremental_ = 0;
};

}  // namespace wsm::merger
