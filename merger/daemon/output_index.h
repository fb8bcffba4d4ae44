#pragma once
// DIR/index.json: every output the daemon wrote, newest last, rewritten atomically after each
// emission so a reader never sees a half-written index. Each record names its output twice:
// "path" (absolute) and "file" (relative to DIR, so the directory can move or be read from another
// machine); with scores, "best" names the best output at each step (best_emulation.h). Loaded on start, so restarts append, and
// reconciled with the files then: an output is renamed into place before the index is rewritten,
// so a kill -9 in between leaves an output the index does not list.
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "merger/daemon/best_emulation.h"
#include "merger/daemon/output_record.h"

namespace wsm::merger {

class OutputIndex {
 public:
  // Loads an existing DIR/<name> (index.json unless told), reconciles.
  explicit OutputIndex(std::filesystem::path out_dir, const std::string& name = "index.json");
  // Drops records whose file is gone and adds the outputs under DIR/<run>/<label>/ that have no
  // record (rebuilt from the provenance each output carries); rewrites the file when
  // anything changed. Returns {added, dropped}.
  std::pair<std::size_t, std::size_t> reconcile();
  // Rewrites the file; gives each record its "file" (the feed sends the same records).
  void append(std::vector<OutputRecord>& records);
  // How "best" ranks scores (lower is better unless told).
  void set_score_order(ScoreOrder order) { order_ = order; }
  // An output's evaluation (output_evaluator.h) as its record's "eval"; rewrites the file. False
  // when no record has that path.
  bool set_eval(const std::string& path, const nlohmann::json& eval);
  // A raw checkpoint's evaluation, appended to the index's "raw" list; rewrites the file.
  void add_raw(const nlohmann::json& record);
  const nlohmann::json& json() const { return index_; }
  std::size_t size() const { return index_["outputs"].size(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path out_dir_, path_;
  nlohmann::json index_;
  ScoreOrder order_ = ScoreOrder::lower_is_better;
};

}  // namespace wsm::merger
