#ifdef WSM_HAVE_TRAINER
#include "tools/rescore.h"

#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "merger/daemon/best_emulation.h"
#include "merger/daemon/output_format.h"
#include "merger/daemon/run_id.h"
#include "wsm/core/error.h"
#include "wsm/formats/atomic_file.h"
#include "wsm/formats/checkpoint_name.h"
#include "wsm/formats/hf_directory.h"

namespace wsm::tools {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool has_score(const json& record) {
  return record.contains("eval") && record["eval"].is_object() && record["eval"].contains("score") &&
         record["eval"]["score"].is_number();
}

// An output record's file: "file" (relative to DIR), else "path" as written, else its last three
// parts (<run>/<label>/<name>) under DIR (an index written from another working directory).
fs::path output_of(const fs::path& dir, const json& r) {
  if (r.contains("file") && r["file"].is_string()) return dir / r["file"].get<std::string>();
  const fs::path path = r.value("path", "");
  if (fs::exists(path)) return path;
  std::vector<fs::path> parts(path.begin(), path.end());
  if (parts.size() < 3) return path;
  return dir / parts[parts.size() - 3] / parts[parts.size() - 2] / parts.back();
}

// The form the daemon wrote its outputs in, from the first output listed.
merger::OutputFormatOptions outputs_form(const fs::path& dir, const json& outputs) {
  merger::OutputFormatOptions form;
  for (const auto& r : outputs) {
    const fs::path p = output_of(dir, r);
    if (r.contains("part")) continue;  // a sharded run's step directory: HDF5 parts
    if (p.extension() == ".safetensors") form.format = merger::OutputFormat::safetensors;
    if (is_hf_model_dir(p)) form.format = merger::OutputFormat::hf, form.hf_template = p;
    break;
  }
  return form;
}

json eval_record(const compare::ModelScorer::Outcome& o, const std::string& evaluator, double seconds) {
  json j = {{"evaluator", evaluator}, {"seconds", seconds}, {"rescored", true}};
  if (o.score) j["score"] = *o.score;
  else j["error"] = o.error;
  return j;
}

}  // namespace

RescoreSummary rescore_index(const fs::path& dir, const std::string& index_name, const compare::Evaluator& ev,
                             const fs::path& store) {
  const fs::path index_path = dir / index_name;
  std::ifstream in(index_path);
  if (!in) throw Error(index_path.string() + ": no index (is this the --out directory of `wsm serve`?)");
  json index = json::parse(in, nullptr, false);
  if (index.is_discarded() || !index.is_object() || !index.contains("outputs"))
    throw Error(index_path.string() + ": not an index written by `wsm serve`");
  const compare::ModelScorer scorer(ev, dir / "eval-logs");
  RescoreSummary summary;
  auto score = [&](const fs::path& model, json& record) {
    const auto start = std::chrono::steady_clock::now();
    const auto outcome = scorer(model);
    record["eval"] = eval_record(outcome, ev.describe(), std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    (outcome.score ? summary.scored : summary.failed) += 1;
    spdlog::info("rescore: {}: {}", model.string(), outcome.score ? std::to_string(*outcome.score) : outcome.error);
  };
  for (auto& r : index["outputs"])
    if (r.is_object() && !has_score(r)) score(output_of(dir, r), r);
  const auto form = outputs_form(dir, index["outputs"]);
  if (index.contains("raw") && index["raw"].is_array())
    for (auto& r : index["raw"]) {
      if (!r.is_object() || has_score(r)) continue;
      const fs::path stored = store.empty() ? fs::path() : merger::run_folder(store, r.value("run_id", "")) /
                                                               checkpoint_file_name(r.value("step", std::int64_t{0}));
      if (stored.empty() || !fs::exists(stored)) {
        ++summary.raw_missing;
        continue;
      }
      fs::path model = stored;
      const fs::path scratch = dir / ".rescore-scratch" / merger::output_path(stored.filename(), form.format);
      if (form.format != merger::OutputFormat::h5) {
        fs::create_directories(scratch.parent_path());
        merger::write_in_format(stored, scratch, form);
        model = scratch;
      }
      score(model, r);
      fs::remove_all(dir / ".rescore-scratch");
    }
  index["best"] = merger::best_by_step(index["outputs"], ev.order == compare::ScoreOrder::higher_is_better
                                                              ? merger::ScoreOrder::higher_is_better
                                                              : merger::ScoreOrder::lower_is_better);
  write_file_atomic(index_path, index.dump(2) + "\n");
  return summary;
}

}  // namespace wsm::tools
#endif
