#pragma once
// The stable-phase readout: every output the daemon writes is scored (`wsm serve --eval-cmd`, or
// wsm's own evaluator), and at each emission the run's newest raw checkpoint too, on threads of
// the evaluator's own (std::jthread) so ingest and merging never wait for an evaluation. Results
// go to a sink (the output index, index.json) and to `wsm status`. A failing evaluation is logged
// and recorded, never thrown: no evaluation stops the daemon.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "merger/daemon/best_emulation.h"
#include "merger/daemon/output_format.h"
#include "merger/daemon/output_record.h"
#include "merger/daemon/window_store.h"

namespace wsm::merger {

struct ScoreOutcome {
  std::optional<double> score;
  std::string error;  // why there is no score
};
// Scores one checkpoint file; called on the evaluator's threads, several at once when threads > 1.
using ScoreFunction = std::function<ScoreOutcome(const std::filesystem::path&)>;

struct EvalOptions {
  ScoreFunction score;    // empty: nothing is scored
  // Stops the scoring running now (kills `--eval-cmd`'s process groups); stop() calls it so a
  // hung command cannot hold up shutdown. Empty: stop() waits for what runs.
  std::function<void()> cancel;
  std::string evaluator;  // what scores, as records name it ("python eval.py {path}")
  int threads = 1;
  bool raw = true;        // also score the newest raw checkpoint of each emission
  // Raw checkpoints held only in RAM (no --store) are written here to be scored, then removed.
  std::filesystem::path scratch_dir;
  // The form raw checkpoints are scored in: the outputs' (--format), so one eval command reads
  // both; anything but h5 is written as a scratch copy in scratch_dir, removed after scoring.
  OutputFormatOptions raw_format;
  ScoreOrder order = ScoreOrder::lower_is_better;  // for index.json's "best" and --publish-best
  bool publish_best = false;                       // keep OUT/<run>/best at the best output
};

struct EvalRecord {
  std::string run_id;
  std::string label;  // the emulation's ("1-sqrt_w800"), or "raw"
  std::int64_t step = 0, tokens = 0;
  std::filesystem::path path;  // the output scored (empty for a raw checkpoint's scratch copy)
  ScoreOutcome outcome;
  double seconds = 0;
};

// The record's "eval" object in index.json: {"score" or "error", "evaluator", "seconds"}.
nlohmann::json eval_json(const EvalRecord& r, const std::string& evaluator);

class OutputEvaluator {
 public:
  using Sink = std::function<void(const EvalRecord&)>;  // called on an evaluator thread
  OutputEvaluator(EvalOptions options, Sink sink);
  ~OutputEvaluator();  // stop()
  OutputEvaluator(const OutputEvaluator&) = delete;
  OutputEvaluator& operator=(const OutputEvaluator&) = delete;

  // An output written: an index record (run_id, label, step, tokens, path). Returns at once.
  void submit_output(const OutputRecord& record);
  // A raw checkpoint: scored from its store file once persisted, else from a scratch copy. Held
  // until scored, so at most kMaxQueuedRaw wait per run; an older one is dropped for a newer.
  void submit_raw(Entry checkpoint);
  static constexpr std::size_t kMaxQueuedRaw = 2;

  std::vector<EvalRecord> latest() const;  // the newest result per (run, label)
  std::size_t pending() const;            // queued and running
  void wait_idle();                       // until nothing is queued or running
  void stop();                            // drops what is queued (logged), cancels what runs

 private:
  struct Item {
    EvalRecord record;
    Entry raw;  // set for a raw checkpoint
  };
  void loop(std::stop_token stop);
  EvalRecord evaluate(Item& item) const;

  EvalOptions options_;
  Sink sink_;
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::condition_variable idle_cv_;
  std::deque<Item> queue_;
  std::size_t running_ = 0;
  std::atomic<bool> stopping_{false};  // also read by evaluate() while it waits for a store file
  std::map<std::pair<std::string, std::string>, EvalRecord> latest_;
  std::vector<std::jthread> threads_;  // last: they start once everything above exists
};

}  // namespace wsm::merger
