#pragma once
// The daemon's sessions, one per peer that said Hello: what the peer sends (run, manifest, credit,
// the checkpoint it is sending), at most max_sessions at once. MergerCore owns one; the rules for
// what a session may send stay in the core.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "merger/daemon/checkpoint_assembler.h"
#include "merger/daemon/sharded_group.h"

namespace wsm::merger {

using Clock = std::chrono::steady_clock;

struct Session {
  std::string run_id;
  std::shared_ptr<const Manifest> manifest;
  std::uint64_t checkpoint_bytes = 0;  // one checkpoint of this manifest, held while it arrives
  std::uint32_t outstanding = 0;       // chunks the peer may still send
  std::uint32_t consumed = 0;          // chunks received since the last grant
  std::unique_ptr<CheckpointAssembler> partial;
  std::optional<std::int64_t> rejected_step;  // its later chunks are dropped quietly
  Clock::time_point last_seen;
  std::optional<GroupMember> group;  // one rank of a sharded run (protocol version 2)
  std::uint64_t footprint = 0;       // a rank's own manifest and slices (RunRegistry's bytes)
};

class SessionTable {
 public:
  using Map = std::map<std::string, Session>;  // by peer (ZeroMQ routing id)
  using iterator = Map::iterator;

  explicit SessionTable(std::size_t max_sessions) : max_sessions_(max_sessions) {}

  iterator find(const std::string& peer) { return sessions_.find(peer); }
  bool contains(const std::string& peer) const { return sessions_.contains(peer); }
  Session& at(const std::string& peer) { return sessions_.at(peer); }
  bool full() const { return sessions_.size() >= max_sessions_; }
  std::size_t size() const { return sessions_.size(); }
  bool serves(const std::string& run) const;  // a session of this run is open

  // The peer's session, replacing the one it had.
  Session& open(const std::string& peer, Session session);
  // Closes the longest idle session that is not receiving a checkpoint and returns it (its peer is
  // answered NO_SESSION at its next message and says hello again, as both clients do); throws
  // OVER_BUDGET when every session is receiving one. `peer` is the one asking, for the log.
  Session make_room_for(const std::string& peer);
  // Removes the session and returns it (the caller releases what it held).
  Session close(iterator it);

  iterator begin() { return sessions_.begin(); }
  iterator end() { return sessions_.end(); }
  Map::const_iterator begin() const { return sessions_.begin(); }
  Map::const_iterator end() const { return sessions_.end(); }

 private:
  std::size_t max_sessions_;
  Map sessions_;
};

// A peer's routing id in hex, for logs.
std::string show_peer(const std::string& peer);

}  // namespace wsm::merger
