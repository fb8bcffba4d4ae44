#pragma once
// What `wsm compare` measures: one row per scored model (a raw trunk checkpoint, a WSD branch's
// checkpoint, a WSM merge, or a user's baseline such as their own WSD run), with how it was made
// and its score, as written to results.json and results.csv (schema in docs/compare.md).
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsm::tools::compare {

enum class Method { raw, wsd, wsm, baseline };
std::string_view method_name(Method m);

struct ScoredModel {
  Method method = Method::raw;
  std::string name;                    // baseline: the name given (--baseline NAME=PATH)
  std::string shape;                   // decay shape (wsd, wsm); empty for raw
  double floor = 0;                    // minimum LR fraction of the shape
  std::int64_t window = 0;             // steps: the merge window (wsm) or the decay duration (wsd)
  std::optional<std::uint64_t> seed;   // study mode
  std::optional<std::int64_t> step;    // the newest step the model holds
  std::vector<std::int64_t> sources;   // wsm: the steps merged, oldest first
  std::vector<double> weights;         // wsm: their merge weights
  std::int64_t interval = 0;           // granularity ablation only: steps between the merged checkpoints
  std::filesystem::path path;          // the file scored (absolute)
  std::optional<double> score;         // empty when scoring failed (see error)
  std::optional<double> noise;         // the score's standard error, when the evaluator reports one
  std::string error;
  bool final = true;                   // false: an intermediate point of a curve (trunk, branch)
};

nlohmann::json to_json(const ScoredModel& m);
ScoredModel scored_model_from_json(const nlohmann::json& j);

// One CSV line per model, with a header; lists are joined with ';'; numbers in their shortest
// form that reads back exactly (0.1, not 0.10000000000000001).
std::string results_csv(const std::vector<ScoredModel>& rows);

// What a study's training runs took, summed from their done.json files.
struct TrainingTime {
  double seconds = 0;
  int timed = 0;  // runs whose wall time was recorded
  int runs = 0;
};

}  // namespace wsm::tools::compare
