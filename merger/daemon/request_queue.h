#pragma once
// On-demand merges (MergeRequest) queued and not yet answered, per peer and in all: a peer may have
// kMaxQueuedRequestsPerPeer waiting, all peers together kMaxQueuedRequests (docs/protocol.md,
// "Limits"), so that no peer can fill the emission worker's queue.
#include <map>
#include <string>

namespace wsm::merger {

inline constexpr int kMaxQueuedRequestsPerPeer = 4;  // MergeRequests not yet answered
inline constexpr int kMaxQueuedRequests = 16;        // the same, all peers together

class RequestQueue {
 public:
  // Throws ProtocolError(BAD_REQUEST) when one more request of `peer` is over a limit.
  void check_room(const std::string& peer) const;
  void add(const std::string& peer);
  // A request of `peer` was answered (a peer with none queued is ignored).
  void done(const std::string& peer);

  int queued(const std::string& peer) const;
  int total() const { return total_; }
  std::size_t peers() const { return per_peer_.size(); }  // peers with a request queued

 private:
  std::map<std::string, int> per_peer_;  // only peers with at least one queued
  int total_ = 0;
};

}  // namespace wsm::merger
