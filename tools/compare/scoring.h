#pragma once
// Scores models for `wsm compare`: wsm's own evaluator (exactly `wsm eval`: same validation text,
// same positions) or a user's command (`--eval-cmd 'python eval.py {path}'`, whose last number on
// stdout, or a JSON key, is the score). Scores are cached by file identity (path, size, mtime), so a
// re-run scores only what changed.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tools/compare/jobs.h"
#include "tools/compare/results.h"
#include "tools/compare/score_parser.h"

namespace wsm::trainer {
struct ModelFile;
}

namespace wsm::tools::compare {

enum class ScoreOrder { lower_is_better, higher_is_better };

struct Evaluator {
  std::string command;                // empty: wsm's own GPT evaluator; else {path} is replaced
  std::string json_key;               // read the score from this key of a JSON object on stdout
  // The score's standard error from this key of a JSON object on stdout (e.g. "stderr"): merges
  // then differ from a baseline only beyond 2 combined standard errors (docs/compare.md).
  std::string noise_key;
  std::filesystem::path val;          // built-in: validation text (empty: the Austen cache's)
  std::int64_t positions = 131072;    // built-in: positions scored
  ScoreOrder order = ScoreOrder::lower_is_better;
  double timeout_s = 0;               // command: > 0 kills it (its process group) after this long
  std::string describe() const;       // for reports: "wsm eval (131072 positions of val.txt)" or the command
};

struct CachedScore {
  double score = 0;
  std::optional<double> noise;
};

class ScoreCache {
 public:
  explicit ScoreCache(std::filesystem::path file);  // loads it when present
  std::optional<CachedScore> find(const std::filesystem::path& model, const std::string& evaluator) const;
  void put(const std::filesystem::path& model, const std::string& evaluator, CachedScore score);
  void save() const;  // atomically
  std::filesystem::path directory() const { return file_.parent_path(); }

 private:
  std::filesystem::path file_;
  std::map<std::string, CachedScore> scores_;  // key: evaluator, path, size, mtime
};

// One model at a time, from any thread (`wsm serve --eval-cmd`, the daemon's readout): the
// validation text is read once; each command's output goes to a log of its own in log_dir
// (eval_log_name).
// `reference`: for the built-in evaluator, a checkpoint whose model config and vocabulary serve
// models that carry none (the daemon's outputs); empty: every model must carry its own.
class ModelScorer {
 public:
  ModelScorer(Evaluator evaluator, std::filesystem::path log_dir, const std::filesystem::path& reference = {});
  struct Outcome {
    std::optional<double> score;
    std::optional<double> noise;  // Evaluator::noise_key's value, when the command printed it
    std::string error;  // why there is no score: names the model
  };
  Outcome operator()(const std::filesystem::path& model) const;
  const Evaluator& evaluator() const { return evaluator_; }
  // Kills every command running now and any started later (their outcomes say so): shutdown.
  void cancel_running() const { control_->cancel(); }

 private:
  Evaluator evaluator_;
  std::filesystem::path log_dir_, val_path_;
  std::string val_text_;  // built-in evaluator only
  std::shared_ptr<const trainer::ModelFile> reference_;
  std::shared_ptr<JobControl> control_ = std::make_shared<JobControl>();
};

// Fills `score` (or `error`) of every row that has none, `jobs` at a time for a command evaluator.
// Throws nothing for a failing model: its row gets an error naming the model; the rest go on.
void score_models(std::vector<ScoredModel>& rows, const Evaluator& evaluator, ScoreCache& cache, int jobs);

// `command` with every {path} replaced by the shell-quoted path (one pass: a path holding "{path}"
// is not replaced again).
std::string substitute_path(const std::string& command, const std::filesystem::path& path);

// A log file name for one evaluation of `model`, unique in this process and across processes:
// "eval-<run>-<label>-<file>-<pid>-<n>.log" from the model's last three path parts.
std::string eval_log_name(const std::filesystem::path& model);

}  // namespace wsm::tools::compare
