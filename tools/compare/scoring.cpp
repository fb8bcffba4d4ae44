#include "tools/compare/scoring.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "wsm/core/file_name.h"
#include "wsm/formats/atomic_file.h"
#include "wsm/core/error.h"
#include "tools/compare/jobs.h"
#include "tools/corpus/austen.h"
#include "wsm/trainer/evaluate.h"
#include "wsm/trainer/train.h"

namespace wsm::tools::compare {
namespace fs = std::filesystem;
namespace {

std::string cache_key(const fs::path& model, const std::string& evaluator) {
  std::error_code ec;
  const auto size = fs::file_size(model, ec);
  const auto mtime = fs::last_write_time(model, ec).time_since_epoch().count();
  return fmt::format("{}\n{}\n{}\n{}", evaluator, fs::absolute(model).string(), ec ? 0 : size, ec ? 0 : mtime);
}

fs::path validation_path(const Evaluator& ev) {
  return ev.val.empty() ? trainer::default_corpus(austen_root()).val : ev.val;
}

// What an eval command's run says: its score, or why there is none.
ModelScorer::Outcome command_outcome(const JobResult& r, const fs::path& model, const Evaluator& ev,
                                     const fs::path& log) {
  if (r.exit_code != 0)
    return {std::nullopt, std::nullopt, fmt::format("eval command failed for {} (exit {}): {}", model.string(), r.exit_code,
                                      r.last_error.empty() ? "no message" : r.last_error)};
  if (auto score = parse_score(r.out, ev.json_key))
    return {score, ev.noise_key.empty() ? std::nullopt : parse_score(r.out, ev.noise_key), {}};
  return {std::nullopt, std::nullopt, "eval command printed no " +
                            (ev.json_key.empty() ? std::string("number") : "key '" + ev.json_key + "'") + " for " +
                            model.string() + " (log: " + log.string() + ")"};
}

void score_builtin(std::vector<ScoredModel*>& todo, const Evaluator& ev, ScoreCache& cache) {
  const ModelScorer scorer(ev, cache.directory() / "logs");
  Progress progress("score", double(todo.size()), "models");
  for (ScoredModel* m : todo) {
    const auto outcome = scorer(m->path);
    if (outcome.score) {
      m->score = outcome.score;
      cache.put(m->path, ev.describe(), {*m->score, std::nullopt});
    } else {
      m->error = outcome.error;
    }
    progress.advance(1);
  }
  progress.finish();
}

void score_with_command(std::vector<ScoredModel*>& todo, const Evaluator& ev, ScoreCache& cache, int jobs,
                        const fs::path& log_dir) {
  std::vector<Job> batch;
  for (std::size_t i = 0; i < todo.size(); ++i)
    batch.push_back({todo[i]->path.filename().string(),
                     {"/bin/sh", "-c", substitute_path(ev.command, todo[i]->path)},
                     log_dir / eval_log_name(todo[i]->path), std::chrono::milliseconds(std::llround(ev.timeout_s * 1000))});
  Progress progress("score", double(todo.size()), "models");
  const auto results = run_jobs(batch, jobs, {.on_done = [&](std::size_t, const JobResult&) { progress.advance(1); }});
  progress.finish();
  for (std::size_t i = 0; i < todo.size(); ++i) {
    ScoredModel& m = *todo[i];
    const auto outcome = command_outcome(results[i], m.path, ev, batch[i].log);
    if (!outcome.score) {
      m.error = outcome.error;
      continue;
    }
    m.score = outcome.score;
    m.noise = outcome.noise;
    cache.put(m.path, ev.describe(), {*m.score, m.noise});
  }
}

}  // namespace

ModelScorer::ModelScorer(Evaluator evaluator, fs::path log_dir, const fs::path& reference)
    : evaluator_(std::move(evaluator)), log_dir_(std::move(log_dir)) {
  if (!evaluator_.command.empty()) return;
  val_path_ = validation_path(evaluator_);
  val_text_ = trainer::read_text_file(val_path_);
  if (!reference.empty()) reference_ = std::make_shared<const trainer::ModelFile>(trainer::load_model(reference));
}

ModelScorer::Outcome ModelScorer::operator()(const fs::path& model) const {
  if (evaluator_.command.empty()) {
    try {
      return {trainer::evaluate_model(trainer::load_model(model, reference_.get()), val_text_, val_path_.string(), evaluator_.positions).loss,
              std::nullopt, {}};
    } catch (const std::exception& e) {
      return {std::nullopt, std::nullopt, model.string() + ": " + e.what()};
    }
  }
  std::error_code ec;
  fs::create_directories(log_dir_, ec);
  const Job job{model.filename().string(), {"/bin/sh", "-c", substitute_path(evaluator_.command, model)},
                log_dir_ / eval_log_name(model), std::chrono::milliseconds(std::llround(evaluator_.timeout_s * 1000)),
                control_.get()};
  const auto results = run_jobs(std::span(&job, 1), 1);
  return command_outcome(results.front(), model, evaluator_, job.log);
}

std::string Evaluator::describe() const {
  if (!command.empty())
    return command + (json_key.empty() ? "" : " [key " + json_key + "]") +
           (noise_key.empty() ? "" : " [noise " + noise_key + "]");
  return fmt::format("wsm eval ({} positions of {})", positions, val.empty() ? "the Austen validation text" : val.string());
}

ScoreCache::ScoreCache(fs::path file) : file_(std::move(file)) {
  if (!fs::exists(file_)) return;
  try {
    std::ifstream in(file_);
    const auto j = nlohmann::json::parse(in);
    for (const auto& e : j.at("scores")) {
      CachedScore c{e.at("score").get<double>(), std::nullopt};
      if (e.contains("noise") && e.at("noise").is_number()) c.noise = e.at("noise").get<double>();
      scores_[e.at("key").get<std::string>()] = c;
    }
  } catch (const std::exception& e) {
    throw Error(file_.string() + ": unreadable score cache (" + e.what() + "); delete it to score again");
  }
}

std::optional<CachedScore> ScoreCache::find(const fs::path& model, const std::string& evaluator) const {
  const auto it = scores_.find(cache_key(model, evaluator));
  if (it == scores_.end()) return std::nullopt;
  return it->second;
}

void ScoreCache::put(const fs::path& model, const std::string& evaluator, CachedScore score) {
  scores_[cache_key(model, evaluator)] = score;
}

void ScoreCache::save() const {
  nlohmann::json j = {{"scores", nlohmann::json::array()}};
  for (const auto& [key, c] : scores_) {
    nlohmann::json e = {{"key", key}, {"score", c.score}};
    if (c.noise) e["noise"] = *c.noise;
    j["scores"].push_back(std::move(e));
  }
  write_file_atomic(file_, j.dump(1));
}

std::string substitute_path(const std::string& command, const fs::path& path) {
  std::string quoted = "'";
  for (char c : fs::absolute(path).string()) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  constexpr std::string_view placeholder = "{path}";
  std::string out;
  std::size_t from = 0;
  for (std::size_t at; (at = command.find(placeholder, from)) != std::string::npos; from = at + placeholder.size())
    out.append(command, from, at - from).append(quoted);
  return out.append(command, from);
}

std::string eval_log_name(const fs::path& model) {
  static std::atomic<std::uint64_t> counter{0};
  const fs::path p = model.lexically_normal();
  std::string parts;
  for (const fs::path& part : {p.parent_path().parent_path().filename(), p.parent_path().filename(), p.filename()})
    if (!part.empty()) parts += (parts.empty() ? "" : "-") + part.string();
  return fmt::format("eval-{}-{}-{}.log", file_name_safe(parts), ::getpid(), counter.fetch_add(1));
}

void score_models(std::vector<ScoredModel>& rows, const Evaluator& ev, ScoreCache& cache, int jobs) {
  std::vector<ScoredModel*> todo;
  for (auto& m : rows) {
    if (m.score) continue;
    m.error.clear();
    if (auto cached = cache.find(m.path, ev.describe())) m.score = cached->score, m.noise = cached->noise;
    else todo.push_back(&m);
  }
  if (todo.empty()) return;
  if (ev.command.empty()) score_builtin(todo, ev, cache);
  else score_with_command(todo, ev, cache, jobs, cache.directory() / "logs");
  cache.save();
}

}  // namespace wsm::tools::compare
