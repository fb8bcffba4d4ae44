#pragma once
// DIR/index.json: every output the daemon wrote, newest last, rewritten atomically after each
// emission so a reader never sees a half-written index. Loaded on start, so restarts append.
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

namespace wsm::merger {

class OutputIndex {
 public:
  explicit OutputIndex(std::filesystem::path out_dir);  // loads an existing index.json
  void append(const std::vector<nlohmann::json>& records);  // and rewrites the file
  const nlohmann::json& json() const { return index_; }
  std::size_t size() const { return index_["outputs"].size(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  nlohmann::json index_;
};

}  // namespace wsm::merger
