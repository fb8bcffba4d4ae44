#include "merger/engine/model_metadata.h"

namespace wsm::merger {

bool reserved_metadata_key(const std::string& key) {
  return key.empty() || key.starts_with("wsm.") || key == "total_size" || key == "format";
}

std::string shown_metadata_key(const std::string& key) { return key.size() > 64 ? key.substr(0, 64) + "..." : key; }

ModelMetadata model_metadata(const std::map<std::string, std::string>& extra) {
  ModelMetadata out;
  for (const auto& [key, value] : extra)
    if (!reserved_metadata_key(key)) out.emplace(key, value);
  return out;
}

std::uint64_t metadata_bytes(const ModelMetadata& metadata) {
  std::uint64_t bytes = 0;
  for (const auto& [key, value] : metadata) bytes += key.size() + value.size();
  return bytes;
}

std::optional<std::string> metadata_difference(const ModelMetadata* held, const ModelMetadata* sent) {
  static const ModelMetadata none;
  const ModelMetadata& a = held ? *held : none;
  const ModelMetadata& b = sent ? *sent : none;
  if (a == b) return std::nullopt;
  for (auto ia = a.begin(), ib = b.begin();; ++ia, ++ib) {
    if (ib == b.end() || (ia != a.end() && ia->first < ib->first))
      return "metadata key '" + shown_metadata_key(ia->first) + "' is missing";
    if (ia == a.end() || ib->first < ia->first) return "metadata key '" + shown_metadata_key(ib->first) + "' is new";
    if (ia->second != ib->second) return "metadata key '" + shown_metadata_key(ia->first) + "' has another value";
  }
}

}  // namespace wsm::merger
