#include "merger/daemon/step_combiner.h"

#include <utility>

namespace wsm::merger {

void StepCombiner::post(Combination c) {
  auto task = [done = done_, c = std::move(c)]() mutable {
    CombineResult r;
    try {
      std::vector<const RankPart*> parts;
      for (const auto& p : c.parts) parts.push_back(&p);
      r.node = combine_parts(c.run_id, parts);
    } catch (const wire::ProtocolError& e) {
      r.error = e;
    } catch (const std::exception& e) {
      r.error = wire::ProtocolError(v1::INTERNAL, "run '" + c.run_id + "' step " + std::to_string(c.step) +
                                                      ": cannot combine the ranks' parts: " + e.what());
    }
    c.parts.clear();  // the bytes stay held by the collector until the outcome
    r.job = std::move(c);
    std::lock_guard lock(done->mutex);
    done->results.push_back(std::move(r));
  };
  if (runner_) runner_(std::move(task));
  else task();
}

std::vector<CombineResult> StepCombiner::take() {
  std::lock_guard lock(done_->mutex);
  return std::exchange(done_->results, {});
}

}  // namespace wsm::merger
