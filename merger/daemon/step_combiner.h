#pragma once
// Combines a sharded step's rank parts (combine_parts: the tiling checks, hashing the replicated
// copies) through a task runner: at once on the caller's thread by default (tests), on a
// TaskThread in the server, so that no other peer waits for a large combination. Results are
// taken back on the message thread (take).
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "merger/daemon/group_collector.h"

namespace wsm::merger {

using TaskRunner = std::function<void(std::function<void()>)>;

struct CombineResult {
  Combination job;
  std::shared_ptr<StoredCheckpoint> node;    // set when the parts combine
  std::optional<wire::ProtocolError> error;  // set when they do not
};

class StepCombiner {
 public:
  explicit StepCombiner(TaskRunner runner = {}) : runner_(std::move(runner)) {}

  void post(Combination c);
  std::vector<CombineResult> take();

 private:
  struct Done {
    std::mutex mutex;
    std::vector<CombineResult> results;
  };
  TaskRunner runner_;
  std::shared_ptr<Done> done_ = std::make_shared<Done>();  // shared with the tasks: outlives either side
};

}  // namespace wsm::merger
