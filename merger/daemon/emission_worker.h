#pragma once
// Runs emissions and running-sum updates (running_sum.h) on a background thread so ingest never
// waits for a merge. The queue stays bounded: a periodic job for a run replaces that run's queued
// (not yet started) periodic job, with a warning when that one had an output due, since the newer
// window supersedes it; an update-only job never replaces one with an output due (it queues
// behind it), so at most two periodic jobs per run wait. A running sum that misses an update
// recomputes from the window. On-demand merges are never dropped.
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "wsm/kernels/merge.h"
#include "merger/daemon/emission.h"
#include "merger/daemon/emission_runner.h"
#include "merger/daemon/output_index.h"
#include "merger/daemon/running_sum.h"
#include "wsm/wire/wsm.pb.h"

namespace wsm::merger {

struct Completion {
  EmissionJob job;
  std::vector<OutputRecord> records;
  std::string error;  // empty on success
};

class EmissionWorker {
 public:
  EmissionWorker(std::unique_ptr<kernels::MergeBackend> backend, std::filesystem::path out_dir,
                 RunnerOptions options = {}, RunningSumOptions sums = {});
  ~EmissionWorker();  // stop()
  EmissionWorker(const EmissionWorker&) = delete;
  EmissionWorker& operator=(const EmissionWorker&) = delete;

  void submit(EmissionJob job);
  std::vector<Completion> take_completions();      // finished jobs since the last call
  std::vector<v1::PendingEmission> pending() const;  // queued and running
  void wait_idle();                                 // until the queue is empty and nothing runs
  // Finishes the job being written, drops the queued ones (logged), joins the thread.
  void stop();
  // The index as it is now, copied under the lock (for readers on other threads).
  nlohmann::json index_snapshot() const;
  // Called on the worker thread after a job's records reach the index (the evaluator's feed, set
  // before the first submit).
  using WrittenListener = std::function<void(const EmissionJob&, const std::vector<OutputRecord>&)>;
  void set_on_written(WrittenListener listener);
  // Evaluations into the index (any thread): an output's "eval", a raw checkpoint's record.
  void record_eval(const std::string& path, const nlohmann::json& eval);
  void record_raw_eval(const nlohmann::json& record);
  void set_score_order(ScoreOrder order);  // how index.json's "best" ranks scores
  std::uint64_t running_sum_bytes() const { return sums_.bytes(); }

 private:
  void loop();

  std::unique_ptr<kernels::MergeBackend> backend_;
  OutputIndex index_;
  RunnerOptions options_;
  RunningSums sums_;  // touched by the worker thread only (bytes() excepted)
  // Lock discipline: mu_ guards index_ (written by the worker thread, read by index_snapshot) and
  // every member below up to thread_; the worker thread merges without holding it.
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<EmissionJob> queue_;
  std::optional<EmissionJob> running_;  // a copy of what runs, for status
  std::vector<Completion> done_;
  WrittenListener on_written_;
  bool stopping_ = false;
  std::jthread thread_;
};

}  // namespace wsm::merger
