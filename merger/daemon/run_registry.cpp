#include "merger/daemon/run_registry.h"

#include "wsm/wire/wire.h"

namespace wsm::merger {

using wire::ProtocolError;

std::uint64_t manifest_footprint(const Manifest& m) {
  std::uint64_t bytes = sizeof(Manifest) + m.capacity() * sizeof(TensorInfo);
  for (const auto& t : m) bytes += t.name.capacity() + 1 + t.shape.capacity() * sizeof(std::int64_t);
  return bytes;
}

void RunRegistry::check_owner(const std::string& run, const std::string& user_id) const {
  const auto it = owners_.find(run);
  if (it != owners_.end() && it->second != user_id)
    throw ProtocolError(v1::BAD_REQUEST, "run '" + run + "' belongs to another client key");
}

void RunRegistry::check_metadata(const std::string& run, const ModelMetadata* sent,
                                 std::optional<const ModelMetadata*> window_metadata) const {
  std::optional<std::string> difference;
  if (auto known = metadata_.find(run); known != metadata_.end())
    difference = metadata_difference(known->second.get(), sent);
  else if (window_metadata)
    difference = metadata_difference(*window_metadata, sent);
  if (difference)
    throw ProtocolError(v1::MANIFEST_MISMATCH,
                        "run '" + run + "': metadata differs from the one this run started with (" + *difference + ")");
}

std::shared_ptr<const Manifest> RunRegistry::manifest(const std::string& run) const {
  auto it = manifests_.find(run);
  return it == manifests_.end() ? nullptr : it->second;
}

std::shared_ptr<const ModelMetadata> RunRegistry::metadata(const std::string& run) const {
  auto it = metadata_.find(run);
  return it == metadata_.end() ? nullptr : it->second;
}

std::shared_ptr<const Manifest> RunRegistry::adopt_manifest(const std::string& run,
                                                            std::shared_ptr<const Manifest> manifest) {
  auto [it, added] = manifests_.try_emplace(run, std::move(manifest));
  if (added) bytes_ += manifest_footprint(*it->second);
  return it->second;
}

void RunRegistry::adopt_metadata(const std::string& run, std::shared_ptr<const ModelMetadata> metadata) {
  const std::uint64_t size = metadata ? metadata_bytes(*metadata) : 0;
  if (metadata_.try_emplace(run, std::move(metadata)).second) bytes_ += size;
}

void RunRegistry::adopt_owner(const std::string& run, const std::string& user_id) {
  if (!user_id.empty()) owners_.try_emplace(run, user_id);
}

std::int64_t RunRegistry::last_step(const std::string& run) const {
  auto it = last_step_.find(run);
  return it == last_step_.end() ? -1 : it->second;
}

std::int64_t RunRegistry::advance(const std::string& run, std::int64_t step) {
  const std::int64_t previous = last_step(run);
  last_step_[run] = step;
  return previous;
}

void RunRegistry::forget_if_unused(const std::string& run, Use use) {
  if (use.sessions || use.window) return;
  if (auto it = manifests_.find(run); it != manifests_.end()) {
    bytes_ -= manifest_footprint(*it->second);
    manifests_.erase(it);
  }
  if (auto it = metadata_.find(run); it != metadata_.end()) {
    if (it->second) bytes_ -= metadata_bytes(*it->second);
    metadata_.erase(it);
  }
  owners_.erase(run);
}

}  // namespace wsm::merger
