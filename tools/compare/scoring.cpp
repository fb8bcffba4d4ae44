#include "tools/compare/scoring.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

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

void score_builtin(std::vector<ScoredModel*>& todo, const Evaluator& ev, ScoreCache& cache) {
  const fs::path val_path = ev.val.empty() ? trainer::default_corpus(austen_root()).val : ev.val;
  const std::string val_text = trainer::read_text_file(val_path);
  Progress progress("score", double(todo.size()), "models");
  for (ScoredModel* m : todo) {
    try {
      m->score = trainer::evaluate_model(trainer::load_model(m->path), val_text, val_path.string(), ev.positions).loss;
      cache.put(m->path, ev.describe(), *m->score);
    } catch (const std::exception& e) {
      m->error = m->path.string() + ": " + e.what();
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
                     log_dir / fmt::format("eval-{:04}-{}.log", i, todo[i]->path.filename().string())});
  Progress progress("score", double(todo.size()), "models");
  const auto results = run_jobs(batch, jobs, {.on_done = [&](std::size_t, const JobResult&) { progress.advance(1); }});
  progress.finish();
  for (std::size_t i = 0; i < todo.size(); ++i) {
    ScoredModel& m = *todo[i];
    const JobResult& r = results[i];
    if (r.exit_code != 0) {
      m.error = fmt::format("eval command failed for {} (exit {}): {}", m.path.string(), r.exit_code,
                            r.last_error.empty() ? "no message" : r.last_error);
      continue;
    }
    m.score = parse_score(r.out, ev.json_key);
    if (!m.score) {
      m.error = "eval command printed no " + (ev.json_key.empty() ? std::string("number") : "key '" + ev.json_key + "'") +
                " for " + m.path.string() + " (log: " + batch[i].log.string() + ")";
      continue;
    }
    cache.put(m.path, ev.describe(), *m.score);
  }
}

}  // namespace

std::string Evaluator::describe() const {
  if (!command.empty()) return command + (json_key.empty() ? "" : " [key " + json_key + "]");
  return fmt::format("wsm eval ({} positions of {})", positions, val.empty() ? "the Austen validation text" : val.string());
}

ScoreCache::ScoreCache(fs::path file) : file_(std::move(file)) {
  if (!fs::exists(file_)) return;
  try {
    std::ifstream in(file_);
    const auto j = nlohmann::json::parse(in);
    for (const auto& e : j.at("scores")) scores_[e.at("key").get<std::string>()] = e.at("score").get<double>();
  } catch (const std::exception& e) {
    throw Error(file_.string() + ": unreadable score cache (" + e.what() + "); delete it to score again");
  }
}

std::optional<double> ScoreCache::find(const fs::path& model, const std::string& evaluator) const {
  const auto it = scores_.find(cache_key(model, evaluator));
  if (it == scores_.end()) return std::nullopt;
  return it->second;
}

void ScoreCache::put(const fs::path& model, const std::string& evaluator, double score) {
  scores_[cache_key(model, evaluator)] = score;
}

void ScoreCache::save() const {
  nlohmann::json j = {{"scores", nlohmann::json::array()}};
  for (const auto& [key, score] : scores_) j["scores"].push_back({{"key", key}, {"score", score}});
  write_file_atomic(file_, j.dump(1));
}

std::optional<double> parse_score(const std::string& text, const std::string& json_key) {
  if (!json_key.empty()) {
    // The whole output as JSON, else its last line that parses as a JSON object.
    std::vector<std::string> candidates{text};
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) candidates.push_back(line);
    for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {
      const auto j = nlohmann::json::parse(*it, nullptr, false);
      if (j.is_object() && j.contains(json_key) && j.at(json_key).is_number()) return j.at(json_key).get<double>();
    }
    return std::nullopt;
  }
  static const std::regex number(R"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)(?:inity)?)",
                                 std::regex::icase);
  std::optional<double> last;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number); it != std::sregex_iterator(); ++it)
    last = std::stod(it->str());
  return last;
}

std::string substitute_path(const std::string& command, const fs::path& path) {
  std::string quoted = "'";
  for (char c : fs::absolute(path).string()) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  std::string out = command;
  for (std::size_t at; (at = out.find("{path}")) != std::string::npos;) out.replace(at, 6, quoted);
  return out;
}

void score_models(std::vector<ScoredModel>& rows, const Evaluator& ev, ScoreCache& cache, int jobs) {
  std::vector<ScoredModel*> todo;
  for (auto& m : rows) {
    if (m.score) continue;
    m.error.clear();
    if (auto cached = cache.find(m.path, ev.describe())) m.score = cached;
    else todo.push_back(&m);
  }
  if (todo.empty()) return;
  if (ev.command.empty()) score_builtin(todo, ev, cache);
  else score_with_command(todo, ev, cache, jobs, cache.directory() / "logs");
  cache.save();
}

}  // namespace wsm::tools::compare
