#pragma once
// Waits for the local ranks of a sharded run to deliver their parts of a step (sharded_group.h):
// the step is complete once local_world_size ranks have delivered and their slices combine; it
// fails closed otherwise, with an error for every sender and nothing added to the window. A step
// whose ranks stop delivering is discarded after the timeout and its senders are told.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "merger/daemon/sharded_group.h"

namespace wsm::merger {

// What became of a step: complete (ack every peer), or failed (tell every peer the error).
struct GroupOutcome {
  std::string run_id;
  std::int64_t step = 0;
  std::vector<std::string> peers;              // the senders of the step
  std::shared_ptr<StoredCheckpoint> complete;  // set when complete
  std::optional<wire::ProtocolError> error;    // set when failed
};

class GroupCollector {
 public:
  using Clock = std::chrono::steady_clock;

  // Checks a Hello of a rank against its run: the world sizes are fixed by the run's first Hello.
  // Returns the error to answer (and fails the run's pending steps into `failed` when the world
  // size changed), or nothing. (A rank's slices are checked when a step combines: against the
  // other ranks, and against the run's window, see MergerCore.)
  std::optional<wire::ProtocolError> declare(const std::string& run_id, const GroupMember& m,
                                             std::vector<GroupOutcome>& failed);

  // A rank's verified part of a step. Nothing while other local ranks are awaited; a complete
  // or failed outcome otherwise. A rank delivering a step twice is a resend when the bytes are
  // the same (the new peer replaces the old) and fails the step when they are not.
  std::optional<GroupOutcome> deliver(const std::string& run_id, RankPart part, Clock::time_point now);

  // A chunk of (run, step) arrived from some rank: its step is still alive.
  void touch(const std::string& run_id, std::int64_t step, Clock::time_point now);

  // Steps with no delivery and no chunk for `timeout`: discarded, GROUP_INCOMPLETE.
  std::vector<GroupOutcome> expire(Clock::time_point now, std::chrono::milliseconds timeout);

  // Peers waiting for their step to complete, with how many ranks delivered and are expected.
  struct Waiting {
    std::string peer;
    std::int64_t step;
    std::uint32_t delivered, expected;
  };
  std::vector<Waiting> waiting() const;

  bool is_group_run(const std::string& run_id) const { return runs_.contains(run_id); }
  std::uint64_t held_bytes() const;  // parts delivered and waiting

 private:
  struct Run {
    int world_size = 0, local_world_size = 0;
  };
  struct Pending {
    std::map<int, RankPart> parts;  // by rank
    Clock::time_point last_activity;
  };
  GroupOutcome fail(std::map<std::pair<std::string, std::int64_t>, Pending>::iterator it, wire::ProtocolError error);

  std::map<std::string, Run> runs_;
  std::map<std::pair<std::string, std::int64_t>, Pending> pending_;
};

}  // namespace wsm::merger
