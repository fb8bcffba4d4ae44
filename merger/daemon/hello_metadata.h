#pragma once
// The model metadata a run's Hello carries, checked before the daemon keeps it
// (merger/engine/model_metadata.h holds what the offline merge shares).
#include <memory>

#include "merger/engine/model_metadata.h"
#include "wsm/wire/wsm.pb.h"

namespace wsm::merger {

// The Hello's metadata, checked: a reserved key (wsm.*, "total_size", "format", empty), a NUL
// byte, a key over kMaxModelMetadataKeyBytes, more than kMaxModelMetadataKeys keys or
// kMaxModelMetadataBytes bytes is a ProtocolError BAD_REQUEST naming the key or the limit. nullptr when the Hello has none.
std::shared_ptr<const ModelMetadata> metadata_from_hello(const v1::Hello& hello);

}  // namespace wsm::merger
