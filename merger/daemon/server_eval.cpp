// The server's part of the stable-phase readout (output_evaluator.h): wires the evaluator between
// the emission worker (outputs written, index.json) and the core (status replies).
#include <spdlog/spdlog.h>

#include <memory>
#include <mutex>

#include "merger/daemon/run_id.h"
#include "merger/daemon/server.h"

namespace wsm::merger {
namespace {

// The checkpoint the job's outputs end at, from what the job holds.
Entry newest_of(const EmissionJob& job) {
  auto match = [&](const std::vector<Entry>& list) -> Entry {
    for (const auto& e : list)
      if (e && e->step == job.step && e->run_id == job.run_id) return e;
    return nullptr;
  };
  if (auto e = match(job.inputs)) return e;
  if (auto e = match(job.context)) return e;
  for (const auto& s : job.sums)
    if (auto e = match(s.members)) return e;
  return nullptr;
}

// OUT/<run>/best at the best output of the run's newest scored step (best_emulation.h); a failure
// is logged, never thrown (no evaluation stops the daemon).
void publish_run_best(const EmissionWorker& worker, const std::filesystem::path& out_dir, const std::string& run) {
  const nlohmann::json index = worker.index_snapshot();
  if (!index.contains("best")) return;
  const auto best = best_now(index["best"], run);
  if (!best) return;
  try {
    publish_best(out_dir, run, (*best)["path"].get<std::string>());
    spdlog::info("eval: run '{}': best is now {} at step {} ({})", run, (*best)["label"].get<std::string>(),
                 (*best)["step"].get<std::int64_t>(), (*best)["score"].get<double>());
  } catch (const std::exception& e) {
    spdlog::error("eval: run '{}': --publish-best: {}", run, e.what());
  }
}

}  // namespace

std::function<void(v1::StatusReply&)> Server::start_evaluator() {
  EvalOptions eval = options_.eval;
  if (eval.scratch_dir.empty()) eval.scratch_dir = options_.core.out_dir / ".eval-scratch";
  std::error_code ec;
  std::filesystem::remove_all(eval.scratch_dir, ec);  // copies a killed daemon was scoring
  eval.raw_format = options_.core.output;  // raw checkpoints are scored in the outputs' form
  EmissionWorker* worker = worker_.get();
  worker->set_score_order(eval.order);
  const std::string evaluator = eval.evaluator;
  const bool publish = eval.publish_best;
  const auto out_dir = options_.core.out_dir;
  auto publishing = std::make_shared<std::mutex>();  // one link swap at a time (evaluator threads)
  evaluator_ = std::make_unique<OutputEvaluator>(eval, [worker, evaluator, publish, out_dir, publishing](const EvalRecord& r) {
    if (r.label == "raw") {
      worker->record_raw_eval(
          {{"run_id", r.run_id}, {"step", r.step}, {"tokens", r.tokens}, {"eval", eval_json(r, evaluator)}});
      return;
    }
    worker->record_eval(r.path.string(), eval_json(r, evaluator));
    if (!publish) return;
    std::lock_guard lock(*publishing);
    publish_run_best(*worker, out_dir, r.run_id);
  });
  OutputEvaluator* ev = evaluator_.get();
  worker_->set_on_written([ev](const EmissionJob& job, const std::vector<OutputRecord>& records) {
    for (const auto& r : records) ev->submit_output(r);
    if (job.request_id != 0) return;  // on-demand merges: the raw checkpoint is scored by the periodic ones
    if (Entry newest = newest_of(job)) ev->submit_raw(std::move(newest));
  });
  // Outputs listed but never scored (the daemon stopped first, or evaluation is newly on).
  std::size_t unscored = 0;
  const nlohmann::json index = worker_->index_snapshot();  // named: a range-for over snapshot()["outputs"] dangles
  for (const auto& r : index["outputs"])
    if (!r.contains("eval")) {
      ev->submit_output(r.get<OutputRecord>());
      ++unscored;
    }
  if (unscored > 0) spdlog::info("eval: scoring {} outputs listed in the index without a score", unscored);
  spdlog::info("eval: every output is scored by {} ({} thread(s))", evaluator, std::max(1, eval.threads));
  return [ev](v1::StatusReply& reply) {
    for (const auto& r : ev->latest()) {
      auto* s = reply.add_scores();
      s->set_run_id(r.run_id);
      s->set_label(r.label);
      s->set_step(r.step);
      s->set_has_score(r.outcome.score.has_value());
      if (r.outcome.score) s->set_score(*r.outcome.score);
      s->set_error(r.outcome.error);
      s->set_path(r.path.string());
    }
    reply.set_evals_pending(static_cast<std::uint32_t>(ev->pending()));
  };
}

}  // namespace wsm::merger
