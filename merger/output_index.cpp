#include "merger/output_index.h"

#include <fstream>

#include <spdlog/spdlog.h>

#include "protocol/atomic_file.h"

namespace wsm::merger {

OutputIndex::OutputIndex(std::filesystem::path out_dir) : path_(out_dir / "index.json") {
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
}

void OutputIndex::append(const std::vector<nlohmann::json>& records) {
  for (const auto& r : records) index_["outputs"].push_back(r);
  write_file_atomic(path_, index_.dump(2) + "\n");
}

}  // namespace wsm::merger
