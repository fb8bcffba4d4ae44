#include "merger/model_metadata.h"

#include "wsm/wire/wire.h"

namespace wsm::merger {

namespace {
bool reserved(const std::string& key) { return key.empty() || key.starts_with("wsm.") || key == "total_size"; }

std::string shown(const std::string& key) { return key.size() > 64 ? key.substr(0, 64) + "..." : key; }
}  // namespace

ModelMetadata model_metadata(const std::map<std::string, std::string>& extra) {
  ModelMetadata out;
  for (const auto& [key, value] : extra)
    if (!reserved(key)) out.emplace(key, value);
  return out;
}

std::uint64_t metadata_bytes(const ModelMetadata& metadata) {
  std::uint64_t bytes = 0;
  for (const auto& [key, value] : metadata) bytes += key.size() + value.size();
  return bytes;
}

std::shared_ptr<const ModelMetadata> metadata_from_hello(const v1::Hello& hello) {
  if (hello.metadata().empty()) return nullptr;
  if (static_cast<std::size_t>(hello.metadata().size()) > kMaxModelMetadataKeys)
    throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata has " + std::to_string(hello.metadata().size()) +
                                                   " keys, over the limit of " + std::to_string(kMaxModelMetadataKeys));
  auto out = std::make_shared<ModelMetadata>();
  std::uint64_t bytes = 0;
  for (const auto& [key, value] : hello.metadata()) {
    if (reserved(key))
      throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata key '" + shown(key) +
                                                     "' is reserved (wsm.* keys are the merger's provenance; "
                                                     "'total_size' and empty keys are not allowed)");
    // HDF5 attributes are C strings: a NUL byte would cut the key or value short in the file.
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos)
      throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata key '" + shown(key.substr(0, key.find('\0'))) +
                                                     "': keys and values must not contain NUL bytes");
    bytes += key.size() + value.size();
    if (bytes > kMaxModelMetadataBytes)
      throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata exceeds the limit of " +
                                                     std::to_string(kMaxModelMetadataBytes) +
                                                     " bytes (keys and values together)");
    out->emplace(key, value);
  }
  return out;
}

std::optional<std::string> metadata_difference(const ModelMetadata* held, const ModelMetadata* sent) {
  static const ModelMetadata none;
  const ModelMetadata& a = held ? *held : none;
  const ModelMetadata& b = sent ? *sent : none;
  if (a == b) return std::nullopt;
  for (auto ia = a.begin(), ib = b.begin();; ++ia, ++ib) {
    if (ib == b.end() || (ia != a.end() && ia->first < ib->first))
      return "metadata key '" + shown(ia->first) + "' is missing";
    if (ia == a.end() || ib->first < ia->first) return "metadata key '" + shown(ib->first) + "' is new";
    if (ia->second != ib->second) return "metadata key '" + shown(ia->first) + "' has another value";
  }
}

}  // namespace wsm::merger
