#include "merger/daemon/output_evaluator.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "merger/daemon/run_id.h"
#include "merger/daemon/stored_checkpoint.h"
#include "wsm/core/error.h"
#include "wsm/formats/checkpoint_name.h"

namespace wsm::merger {
namespace fs = std::filesystem;

nlohmann::json eval_json(const EvalRecord& r, const std::string& evaluator) {
  nlohmann::json j = {{"evaluator", evaluator}, {"seconds", r.seconds}};
  if (r.outcome.score) j["score"] = *r.outcome.score;
  else j["error"] = r.outcome.error;
  return j;
}

OutputEvaluator::OutputEvaluator(EvalOptions options, Sink sink) : options_(std::move(options)), sink_(std::move(sink)) {
  for (int i = 0; i < std::max(1, options_.threads); ++i)
    threads_.emplace_back([this](std::stop_token stop) { loop(stop); });
}

OutputEvaluator::~OutputEvaluator() { stop(); }

void OutputEvaluator::submit_output(const OutputRecord& record) {
  Item item;
  item.record.run_id = record.run_id;
  item.record.label = record.label;
  item.record.step = record.step;
  item.record.tokens = record.tokens;
  item.record.path = record.path;
  std::lock_guard lock(mu_);
  if (stopping_) return;
  queue_.push_back(std::move(item));
  cv_.notify_one();
}

void OutputEvaluator::submit_raw(Entry checkpoint) {
  Item item;
  item.record = {checkpoint->run_id, "raw", checkpoint->step, checkpoint->tokens, {}, {}, 0};
  item.raw = std::move(checkpoint);
  std::lock_guard lock(mu_);
  if (stopping_ || !options_.raw) return;
  // A queued raw checkpoint pins its RAM copy: keep the newest few per run.
  std::size_t queued = 0;
  for (const auto& q : queue_) queued += q.raw && q.record.run_id == item.record.run_id;
  if (queued >= kMaxQueuedRaw) {
    const auto oldest = std::find_if(queue_.begin(), queue_.end(),
                                     [&](const Item& q) { return q.raw && q.record.run_id == item.record.run_id; });
    spdlog::warn("eval: run '{}': evaluations are slower than emissions; raw step {} not scored", oldest->record.run_id,
                 oldest->record.step);
    queue_.erase(oldest);
  }
  queue_.push_back(std::move(item));
  cv_.notify_one();
}

EvalRecord OutputEvaluator::evaluate(Item& item) const {
  EvalRecord r = item.record;
  fs::path scratch;
  try {
    fs::path file = r.path;
    if (item.raw) {
      const auto& c = *item.raw;
      // A store file is written in the background: give the writer a moment before copying from RAM.
      for (int i = 0; i < 600 && c.lease && !c.lease->persisted && !stopping_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (c.lease && c.lease->persisted) {
        file = c.file;
      } else if (c.in_memory()) {
        // Flat in the scratch folder: the output index looks for outputs at <run>/<label>/<file>.
        scratch = options_.scratch_dir / (run_folder(options_.scratch_dir, c.run_id).filename().string() + "-" +
                                          checkpoint_file_name(c.step));
        fs::create_directories(options_.scratch_dir);
        persist(c, scratch);
        file = scratch;
      } else {
        throw Error("the checkpoint has neither a RAM copy nor a store file");
      }
    }
    if (item.raw && options_.raw_format.format != OutputFormat::h5) {
      // The outputs' form, so the eval command that reads them reads this too.
      const fs::path converted = options_.scratch_dir / (run_folder(options_.scratch_dir, r.run_id).filename().string() +
                                                         "-" + output_path(checkpoint_file_name(r.step), options_.raw_format.format).string());
      fs::create_directories(options_.scratch_dir);
      write_in_format(file, converted, options_.raw_format);
      if (!scratch.empty()) fs::remove(scratch);
      file = scratch = converted;
    }
    r.outcome = options_.score(file);
  } catch (const std::exception& e) {
    r.outcome = {std::nullopt, e.what()};
  }
  if (!scratch.empty()) {
    std::error_code ec;
    fs::remove_all(scratch, ec);  // a file, or a Hugging Face directory
  }
  return r;
}

void OutputEvaluator::loop(std::stop_token stop) {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, stop, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_ || stop.stop_requested()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    const auto start = std::chrono::steady_clock::now();
    EvalRecord r = evaluate(item);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r.outcome.score)
      spdlog::info("eval: run '{}' {} step {}: score {}", r.run_id, r.label, r.step, *r.outcome.score);
    else
      spdlog::error("eval: run '{}' {} step {}: {}", r.run_id, r.label, r.step, r.outcome.error);
    try {
      sink_(r);
    } catch (const std::exception& e) {
      spdlog::error("eval: run '{}' {} step {}: not recorded: {}", r.run_id, r.label, r.step, e.what());
    }
    std::lock_guard lock(mu_);
    latest_[{r.run_id, r.label}] = r;
    --running_;
    idle_cv_.notify_all();
  }
}

std::vector<EvalRecord> OutputEvaluator::latest() const {
  std::lock_guard lock(mu_);
  std::vector<EvalRecord> out;
  for (const auto& [key, r] : latest_) out.push_back(r);
  return out;
}

std::size_t OutputEvaluator::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size() + running_;
}

void OutputEvaluator::wait_idle() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [&] { return (queue_.empty() && running_ == 0) || stopping_; });
}

void OutputEvaluator::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    if (!queue_.empty()) spdlog::warn("eval: shutdown: {} queued evaluations dropped (a restart scores outputs again)", queue_.size());
    queue_.clear();
    idle_cv_.notify_all();
  }
  for (auto& t : threads_) t.request_stop();
  cv_.notify_all();
  if (options_.cancel) options_.cancel();  // a hung scoring command would hold the join forever
  threads_.clear();  // joins; an evaluation running ends first (killed, or finishing in-process)
}

}  // namespace wsm::merger
