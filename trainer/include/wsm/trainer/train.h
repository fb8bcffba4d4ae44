#pragma once
// The training run behind `wsm train`: warmup-stable by default, checkpoints every K steps to
// DIR/step_<N>.h5 (parameters) and DIR/state.h5 (full resume state), full states kept at chosen
// steps for branching (DIR/state_<N>.h5), optional streaming to a merger daemon, a log line per K
// steps, and a final validation score.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "wsm/client/client.h"
#include "wsm/formats/checkpoint_name.h"
#include "wsm/trainer/adamw.h"

namespace wsm::trainer {

enum class Device { cpu, cuda };

struct TrainOptions {
  std::string preset = "small";
  std::int64_t steps = 2000;         // total updates (a resumed run continues up to this)
  std::filesystem::path out;         // checkpoint directory
  std::string schedule;              // empty: "warmup=<preset>,stable,peak=<preset>"
  std::string merger;                // merger endpoint (tcp://...); empty: none
  OutagePolicy merger_policy = OutagePolicy::drop_oldest;  // while the merger is away: training never waits
  std::string run_id;                // empty: the out directory's name
  std::int64_t every = 100;          // checkpoint and log interval in steps
  std::uint64_t seed = 1;
  std::filesystem::path data, val;   // empty: the cached Austen corpus under corpus_root
  std::filesystem::path corpus_root; // holds data/cache/austen (empty: the current directory)
  Device device = Device::cpu;
  bool resume = false;               // continue from out/state.h5
  // Branch: start from this full state (another run's state_<N>.h5) instead of from scratch; the run
  // then goes on under `schedule` (e.g. a WSD decay), bit for bit as a run from scratch would.
  std::filesystem::path from_state;
  std::vector<std::int64_t> keep_states;  // also write DIR/state_<N>.h5 at these steps (branch points)
  int threads = 2;                   // OpenMP + OpenBLAS threads (CPU backend)
  int batch_size = 0;                // 0: the preset's
  double clip = 1.0;                 // global gradient-norm clip (0: off)
  AdamWConfig adamw;
  std::int64_t eval_positions = 131072;  // validation positions scored at the end (0: skip)
  bool save_checkpoints = true;      // step_<N>.h5 files
};

struct TrainSummary {
  std::int64_t step = 0;          // updates done
  double last_loss = 0;           // training loss of the last step
  double val_loss = -1;           // at the end, nats (-1 when skipped)
  double val_bpc = -1;
  double tokens_per_s = 0;        // over the whole run, checkpoints included
};

// A duration for progress lines: "1h02m", "3m05s", "0m12s".
std::string format_eta(double seconds);

// File names of a run's outputs, shared by the trainer and the tools that read its directory:
// checkpoints are named by wsm::checkpoint_file_name (wsm/formats/checkpoint_name.h), as the daemon's.
std::string state_file_name(std::int64_t step);       // "state_00000600.h5" (a kept branch point)

TrainSummary train(const TrainOptions& opts);

}  // namespace wsm::trainer
