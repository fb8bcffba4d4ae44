#pragma once
// Waits for the local ranks of a sharded run to deliver their parts of a step (sharded_group.h):
// the step is admitted as a whole at its first rank's Begin (room for every local rank's part is
// reserved then, so either all parts fit the memory budget or none is taken), it is complete once
// local_world_size ranks have delivered and their slices combine (the combination runs off the
// message thread: Combination out, combined() back); it fails closed otherwise, with an error for
// every sender and nothing added to the window. A step whose ranks stop delivering is discarded
// after the timeout and its senders are told.
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

// A step whose parts are all in, to be combined (combine_parts) away from the message thread.
struct Combination {
  std::string run_id;
  std::int64_t step = 0;
  std::uint64_t id = 0;  // which delivery round: a result for a step failed meanwhile is dropped
  std::vector<RankPart> parts;
};

class GroupCollector {
 public:
  using Clock = std::chrono::steady_clock;

  // Checks a Hello of a rank against its run: the world sizes are fixed by the run's first Hello
  // until the run is forgotten (forget_if_idle). A Hello with other world sizes is refused (the
  // returned error) and changes nothing: a stray cannot fail a live job's steps.
  std::optional<wire::ProtocolError> declare(const std::string& run_id, const GroupMember& m);
  int local_world_size(const std::string& run_id) const;

  // Whether (run, step) has its room reserved; admit() reserves node_bytes for it (every local
  // rank's part together).
  bool admitted(const std::string& run_id, std::int64_t step) const { return pending_.contains({run_id, step}); }
  void admit(const std::string& run_id, std::int64_t step, std::uint64_t node_bytes, Clock::time_point now);

  // A rank's verified part of a step: nothing while other local ranks are awaited, a failed
  // outcome, or the step's combination once every local rank delivered. A rank delivering a step
  // twice is a resend when the bytes are the same (the new peer replaces the old) and fails the
  // step when they are not.
  struct Delivery {
    std::optional<GroupOutcome> outcome;
    std::optional<Combination> combine;
  };
  Delivery deliver(const std::string& run_id, RankPart part, Clock::time_point now);

  // The combination's result (node checkpoint or error): the step's outcome, or nothing when the
  // step failed meanwhile.
  std::optional<GroupOutcome> combined(const Combination& c, std::shared_ptr<StoredCheckpoint> node,
                                       std::optional<wire::ProtocolError> error);

  // A chunk of (run, step) arrived from some rank: its step is still alive.
  void touch(const std::string& run_id, std::int64_t step, Clock::time_point now);

  // Steps with no delivery and no chunk for `timeout` (and not being combined): discarded,
  // GROUP_INCOMPLETE.
  std::vector<GroupOutcome> expire(Clock::time_point now, std::chrono::milliseconds timeout);

  // Peers waiting for their step to complete, with how many ranks delivered and are expected.
  struct Waiting {
    std::string peer;
    std::int64_t step;
    std::uint32_t delivered, expected;
  };
  std::vector<Waiting> waiting() const;

  bool is_group_run(const std::string& run_id) const { return runs_.contains(run_id); }
  // Forgets the run's world sizes when none of its steps is pending (call once no rank of it is
  // connected): a job resumed with other world sizes, or a single client, may use the run id.
  void forget_if_idle(const std::string& run_id);
  std::size_t runs() const { return runs_.size(); }
  std::uint64_t held_bytes() const;  // admitted steps: their reservation, or their parts if more

 private:
  struct Run {
    int world_size = 0, local_world_size = 0;
  };
  struct Pending {
    std::map<int, RankPart> parts;  // by rank
    Clock::time_point last_activity;
    int expected = 0;               // local ranks
    std::uint64_t reserved = 0;     // every local rank's part, from admission
    std::uint64_t combining = 0;    // the Combination's id while it runs, else 0
  };
  using PendingMap = std::map<std::pair<std::string, std::int64_t>, Pending>;
  GroupOutcome fail(PendingMap::iterator it, wire::ProtocolError error);

  std::map<std::string, Run> runs_;
  PendingMap pending_;
  std::uint64_t next_id_ = 1;
};

}  // namespace wsm::merger
