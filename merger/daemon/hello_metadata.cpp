#include "merger/daemon/hello_metadata.h"

#include "wsm/wire/wire.h"

namespace wsm::merger {

std::shared_ptr<const ModelMetadata> metadata_from_hello(const v1::Hello& hello) {
  if (hello.metadata().empty()) return nullptr;
  if (static_cast<std::size_t>(hello.metadata().size()) > kMaxModelMetadataKeys)
    throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata has " + std::to_string(hello.metadata().size()) +
                                                   " keys, over the limit of " + std::to_string(kMaxModelMetadataKeys));
  auto out = std::make_shared<ModelMetadata>();
  std::uint64_t bytes = 0;
  for (const auto& [key, value] : hello.metadata()) {
    if (reserved_metadata_key(key))
      throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata key '" + shown_metadata_key(key) +
                                                     "' is reserved (wsm.* keys are the merger's provenance; "
                                                     "'total_size', 'format' and empty keys are not allowed)");
    if (key.size() > kMaxModelMetadataKeyBytes)
      throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata key '" + shown_metadata_key(key) + "' is " +
                                                     std::to_string(key.size()) + " bytes, over the limit of " +
                                                     std::to_string(kMaxModelMetadataKeyBytes) +
                                                     " bytes per key (an HDF5 attribute name)");
    // HDF5 attributes are C strings: a NUL byte would cut the key or value short in the file.
    if (key.find('\0') != std::string::npos || value.find('\0') != std::string::npos)
      throw wire::ProtocolError(v1::BAD_REQUEST, "hello refused: metadata key '" + shown_metadata_key(key.substr(0, key.find('\0'))) +
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

}  // namespace wsm::merger
