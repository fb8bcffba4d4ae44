#pragma once
// A step the window already holds, received again whole: a resumed run re-sending the steps after
// its restart point, or a client resending after a lost Ack. Identical bytes make it a delivery
// (acknowledged, the window unchanged); different bytes are a real conflict (DUPLICATE_STEP).
#include <memory>
#include <optional>
#include <string>

#include "merger/daemon/stored_checkpoint.h"

namespace wsm::merger {

// Compares tensor by tensor, in blocks (the stored copy is read from RAM, or from its file in the
// store when spilled). Returns what differs first, e.g. "tensor 'w' differs at byte 4096", or
// nothing when the two hold the same tensors and bytes.
std::optional<std::string> first_difference(const StoredCheckpoint& received, std::shared_ptr<const StoredCheckpoint> stored);

}  // namespace wsm::merger
