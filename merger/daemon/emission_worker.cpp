#include "merger/daemon/emission_worker.h"

#include <spdlog/spdlog.h>

namespace wsm::merger {

EmissionWorker::EmissionWorker(std::unique_ptr<kernels::MergeBackend> backend, std::filesystem::path out_dir,
                               RunnerOptions options, RunningSumOptions sums)
    : backend_(std::move(backend)),
      index_(std::move(out_dir), options.index_name),
      options_(options),
      sums_(sums),
      thread_([this] { loop(); }) {}

EmissionWorker::~EmissionWorker() { stop(); }

void EmissionWorker::submit(EmissionJob job) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  if (job.request_id == 0) {
    // The run's newest queued periodic job: replaced unless it has an output due and this one has not.
    EmissionJob* last = nullptr;
    for (auto& queued : queue_)
      if (queued.request_id == 0 && queued.run_id == job.run_id) last = &queued;
    if (last && (writes_output(job) || !writes_output(*last))) {
      if (writes_output(*last))
        spdlog::warn("run '{}': merges are slower than checkpoints; output for step {} skipped for step {}",
                     job.run_id, last->step, job.step);
      *last = std::move(job);
      return;
    }
  }
  queue_.push_back(std::move(job));
  cv_.notify_one();
}

void EmissionWorker::loop() {
  for (;;) {
    EmissionJob job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) {
        for (const auto& q : queue_)
          if (writes_output(q)) spdlog::warn("shutdown: dropped the queued output of run '{}' step {}", q.run_id, q.step);
        queue_.clear();
        idle_cv_.notify_all();
        return;
      }
      job = std::move(queue_.front());
      queue_.pop_front();
      running_ = job;
    }
    Completion c;
    auto failed = [&](const std::string& what) {
      c.error += (c.error.empty() ? "" : "; ") + what;
      spdlog::error("run '{}' step {}: output failed: {}", job.run_id, job.step, what);
    };
    try {
      if (!job.outputs.empty()) c.records = run_emission(job, *backend_, options_);
    } catch (const std::exception& e) {
      failed(e.what());
    }
    for (const auto& item : job.sums) {
      try {
        if (auto record = sums_.apply(job, item)) c.records.push_back(std::move(*record));
      } catch (const std::exception& e) {
        failed(item.output.emulation.label + ": " + e.what());
      }
    }
    if (!c.records.empty()) {
      WrittenListener listener;
      try {
        std::lock_guard lock(mu_);  // the index is also read by status callers through index_snapshot()
        index_.append(c.records);
        listener = on_written_;
      } catch (const std::exception& e) {
        failed(e.what());
      }
      if (listener) listener(job, c.records);
    }
    c.job = std::move(job);
    std::lock_guard lock(mu_);
    running_.reset();
    done_.push_back(std::move(c));
    idle_cv_.notify_all();
  }
}

nlohmann::json EmissionWorker::index_snapshot() const {
  std::lock_guard lock(mu_);
  return index_.json();
}

void EmissionWorker::set_on_written(WrittenListener listener) {
  std::lock_guard lock(mu_);
  on_written_ = std::move(listener);
}

void EmissionWorker::record_eval(const std::string& path, const nlohmann::json& eval) {
  std::lock_guard lock(mu_);
  if (!index_.set_eval(path, eval)) spdlog::warn("eval: {} is not in {}", path, index_.path().string());
}

void EmissionWorker::set_score_order(ScoreOrder order) {
  std::lock_guard lock(mu_);
  index_.set_score_order(order);
}

void EmissionWorker::record_raw_eval(const nlohmann::json& record) {
  std::lock_guard lock(mu_);
  index_.add_raw(record);
}

std::vector<Completion> EmissionWorker::take_completions() {
  std::lock_guard lock(mu_);
  return std::exchange(done_, {});
}

std::vector<v1::PendingEmission> EmissionWorker::pending() const {
  std::lock_guard lock(mu_);
  std::vector<v1::PendingEmission> out;
  auto add = [&](const EmissionJob& j, bool running) {
    v1::PendingEmission p;
    p.set_run_id(j.run_id);
    p.set_step(j.step);
    p.set_running(running);
    for (const auto& o : j.outputs) p.add_labels(o.emulation.label);
    for (const auto& o : j.sums)
      if (o.emit) p.add_labels(o.output.emulation.label);
    if (p.labels_size() > 0) out.push_back(std::move(p));
  };
  if (running_) add(*running_, true);
  for (const auto& j : queue_) add(j, false);
  return out;
}

void EmissionWorker::wait_idle() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return (queue_.empty() && !running_) || stopping_; });
}

void EmissionWorker::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace wsm::merger
