#include "merger/daemon/request_queue.h"

#include "wsm/wire/wire.h"

namespace wsm::merger {

void RequestQueue::check_room(const std::string& peer) const {
  if (queued(peer) >= kMaxQueuedRequestsPerPeer)
    throw wire::ProtocolError(v1::BAD_REQUEST, "merge request: " + std::to_string(kMaxQueuedRequestsPerPeer) +
                                                   " requests of this peer are still queued; wait for their replies");
  if (total_ >= kMaxQueuedRequests)
    throw wire::ProtocolError(v1::BAD_REQUEST, "merge request: " + std::to_string(kMaxQueuedRequests) +
                                                   " requests are queued already; try again later");
}

void RequestQueue::add(const std::string& peer) {
  ++per_peer_[peer];
  ++total_;
}

void RequestQueue::done(const std::string& peer) {
  auto it = per_peer_.find(peer);
  if (it == per_peer_.end()) return;
  --total_;
  if (--it->second <= 0) per_peer_.erase(it);
}

int RequestQueue::queued(const std::string& peer) const {
  auto it = per_peer_.find(peer);
  return it == per_peer_.end() ? 0 : it->second;
}

}  // namespace wsm::merger
