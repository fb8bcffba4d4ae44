#include "merger/daemon/output_index.h"

#include <algorithm>
#include <fstream>
#include <set>

#include <spdlog/spdlog.h>

#include "wsm/formats/atomic_file.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/core/error.h"
#include "wsm/merger/provenance.h"

namespace wsm::merger {

OutputIndex::OutputIndex(std::filesystem::path out_dir, const std::string& name)
    : out_dir_(out_dir), path_(out_dir / name) {
  std::filesystem::create_directories(out_dir);
  index_ = {{"version", 1}, {"outputs", nlohmann::json::array()}};
  if (std::filesystem::exists(path_)) {
    try {
      std::ifstream in(path_);
      auto loaded = nlohmann::json::parse(in);
      if (loaded.contains("outputs") && loaded["outputs"].is_array()) index_ = std::move(loaded);
    } catch (const std::exception& e) {
      spdlog::warn("{}: unreadable ({}), starting a new index", path_.string(), e.what());
    }
  }
  reconcile();
}

namespace {
namespace fs = std::filesystem;

// An output's place under the output directory: <run>/<label>/<file>. Records hold the path as it
// was written (relative to the daemon's working directory when --out was), so they are matched by
// this tail.
std::string tail_of(const fs::path& p) {
  std::vector<std::string> parts;
  for (const auto& part : p) parts.push_back(part.string());
  if (parts.size() < 3) return p.string();
  return parts[parts.size() - 3] + "/" + parts[parts.size() - 2] + "/" + parts.back();
}

std::vector<fs::path> outputs_on_disk(const fs::path& out_dir) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& run : fs::directory_iterator(out_dir, ec)) {
    if (!run.is_directory()) continue;
    for (const auto& label : fs::directory_iterator(run.path(), ec)) {
      if (!label.is_directory()) continue;
      for (const auto& f : fs::directory_iterator(label.path(), ec)) {
        const auto name = f.path().filename().string();
        if (name.find(".tmp-") != std::string::npos || name.find(".old-") != std::string::npos) continue;
        // --format h5 / safetensors files, or --format hf directories
        const bool file = f.is_regular_file() && (f.path().extension() == ".h5" || f.path().extension() == ".safetensors");
        if (file || (f.is_directory() && fs::exists(f.path() / "model.safetensors.index.json"))) found.push_back(f.path());
      }
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The output's path relative to the index's directory, for the record's "file".
std::string relative_file(const fs::path& out_dir, const std::string& path) {
  const fs::path rel = fs::absolute(path).lexically_normal().lexically_relative(fs::absolute(out_dir).lexically_normal());
  return rel.empty() || *rel.begin() == ".." ? tail_of(path) : rel.string();
}

// The record emission_runner.cpp's output_record() wrote, rebuilt from the output's provenance.
OutputRecord record_from_file(const fs::path& file) {
  const auto reader = open_checkpoint(file);
  const auto& meta = reader->meta();
  const auto p = provenance_from_metadata(meta.extra);
  if (!p) throw Error(file.string() + ": no wsm provenance");
  OutputRecord r;
  for (const auto& s : p->sources) {
    r.sources.push_back(s.step.value_or(-1));
    r.source_tokens.push_back(s.tokens.value_or(-1));
    r.weights.push_back(s.weight);
  }
  r.run_id = meta.run_id;
  r.label = file.parent_path().filename().string();
  r.spec = p->spec;
  r.window = p->window.value_or(0);
  r.axis = p->axis;
  r.step = meta.step.value_or(0);
  r.tokens = meta.tokens.value_or(0);
  r.path = file.string();
  r.sampling = p->sampling_rule;
  r.dtype = p->dtype;
  r.method = p->method;
  r.recovered = true;  // listed on a restart, not when written
  return r;
}
}  // namespace

std::pair<std::size_t, std::size_t> OutputIndex::reconcile() {
  auto& outputs = index_["outputs"];
  std::set<std::string> listed;
  nlohmann::json kept = nlohmann::json::array();
  std::size_t dropped = 0;
  for (auto& r : outputs) {
    const std::string path = r.contains("path") && r["path"].is_string() ? r["path"].get<std::string>() : "";
    std::error_code ec;
    if (!path.empty() && (fs::exists(path, ec) || fs::exists(out_dir_ / tail_of(path), ec))) {
      listed.insert(tail_of(path));
      kept.push_back(std::move(r));
    } else {
      ++dropped;
    }
  }
  std::vector<OutputRecord> added;
  for (const auto& file : outputs_on_disk(out_dir_)) {
    if (listed.contains(tail_of(file))) continue;
    try {
      added.push_back(record_from_file(file));
    } catch (const std::exception& e) {
      spdlog::warn("{}: output not added to the index: {}", file.string(), e.what());
    }
  }
  std::stable_sort(added.begin(), added.end(),
                   [](const OutputRecord& a, const OutputRecord& b) { return a.step < b.step; });
  for (auto& r : added) {
    r.file = relative_file(out_dir_, r.path);
    kept.push_back(nlohmann::json(r));
  }
  outputs = std::move(kept);  // (the records were moved out of it)
  if (added.empty() && dropped == 0) return {0, 0};
  spdlog::warn("{}: reconciled with the files: {} outputs added, {} records of missing files dropped", path_.string(),
               added.size(), dropped);
  write_file_atomic(path_, index_.dump(2) + "\n");
  return {added.size(), dropped};
}

bool OutputIndex::set_eval(const std::string& path, const nlohmann::json& eval) {
  auto& outputs = index_["outputs"];
  for (auto it = outputs.rbegin(); it != outputs.rend(); ++it)  // the newest outputs are scored first
    if (it->is_object() && it->value("path", "") == path) {
      (*it)["eval"] = eval;
      index_["best"] = best_by_step(outputs, order_);
      write_file_atomic(path_, index_.dump(2) + "\n");
      return true;
    }
  return false;
}

void OutputIndex::add_raw(const nlohmann::json& record) {
  if (!index_.contains("raw") || !index_["raw"].is_array()) index_["raw"] = nlohmann::json::array();
  index_["raw"].push_back(record);
  write_file_atomic(path_, index_.dump(2) + "\n");
}

void OutputIndex::append(std::vector<OutputRecord>& records) {
  for (auto& r : records) {
    if (!r.path.empty()) r.file = relative_file(out_dir_, r.path);
    index_["outputs"].push_back(nlohmann::json(r));
  }
  write_file_atomic(path_, index_.dump(2) + "\n");
}

}  // namespace wsm::merger
