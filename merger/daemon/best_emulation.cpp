#include "merger/daemon/best_emulation.h"

#include <cmath>
#include <map>
#include <system_error>
#include <unistd.h>

#include "merger/daemon/run_id.h"
#include "wsm/core/error.h"

namespace wsm::merger {
namespace fs = std::filesystem;

namespace {
std::optional<double> score_of(const nlohmann::json& record) {
  if (!record.is_object() || !record.contains("eval") || !record["eval"].is_object()) return std::nullopt;
  const auto& eval = record["eval"];
  if (!eval.contains("score") || !eval["score"].is_number()) return std::nullopt;
  const double s = eval["score"].get<double>();
  return std::isfinite(s) ? std::optional<double>(s) : std::nullopt;
}
}  // namespace

nlohmann::json best_by_step(const nlohmann::json& outputs, ScoreOrder order) {
  std::map<std::pair<std::string, std::int64_t>, nlohmann::json> best;
  if (!outputs.is_array()) return nlohmann::json::array();
  for (const auto& r : outputs) {
    const auto score = score_of(r);
    if (!score) continue;
    const std::pair key{r.value("run_id", ""), r.value("step", std::int64_t{0})};
    const auto it = best.find(key);
    if (it != best.end()) {
      const double held = it->second["score"].get<double>();
      if (order == ScoreOrder::lower_is_better ? *score >= held : *score <= held) continue;  // ties: the first listed
    }
    best[key] = {{"run_id", key.first}, {"step", key.second}, {"label", r.value("label", "")},
                 {"path", r.value("path", "")}, {"file", r.value("file", "")}, {"score", *score}};
  }
  nlohmann::json out = nlohmann::json::array();
  for (auto& [key, entry] : best) out.push_back(std::move(entry));
  return out;
}

std::optional<nlohmann::json> best_now(const nlohmann::json& best, const std::string& run_id) {
  std::optional<nlohmann::json> newest;
  for (const auto& e : best)
    if (e.value("run_id", "") == run_id && (!newest || e.value("step", std::int64_t{0}) > newest->value("step", std::int64_t{0})))
      newest = e;
  return newest;
}

void publish_best(const fs::path& out_dir, const std::string& run_id, const fs::path& target) {
  const fs::path run = run_folder(out_dir, run_id);
  const fs::path link = run / "best";
  const fs::path relative = fs::absolute(target).lexically_relative(fs::absolute(run));
  if (relative.empty() || *relative.begin() == "..")
    throw Error(link.string() + ": " + target.string() + " is not an output of run '" + run_id + "'");
  const fs::path temp = run / (".best.tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove(temp, ec);
  fs::create_symlink(relative, temp, ec);
  if (ec) throw Error(temp.string() + ": cannot create the link: " + ec.message());
  fs::rename(temp, link, ec);  // rename(2) replaces the old link atomically
  if (ec) {
    fs::remove(temp);
    throw Error(link.string() + ": cannot replace it (is it a directory?): " + ec.message());
  }
}

}  // namespace wsm::merger
