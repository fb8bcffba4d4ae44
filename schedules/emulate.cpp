#include "wsm/schedules/emulate.h"

#include <string>

#include "wsm/core/error.h"

namespace wsm {

MergeEmulation emulate_merge(const MergeSpec& spec, std::int64_t steps, std::int64_t window,
                             std::int64_t interval) {
  if (steps <= 0) throw Error("merge emulation: steps must be positive, got " + std::to_string(steps));
  if (interval <= 0) throw Error("merge emulation: checkpoint interval must be positive, got " + std::to_string(interval));
  // Checkpoints aligned to the end of the run, so the newest one is the final model.
  std::vector<std::int64_t> all;
  for (std::int64_t p = steps % interval; p <= steps; p += interval) all.push_back(p);
  const auto sel = select_window(spec, all, window);

  MergeEmulation out;
  for (std::size_t i : sel.indices) out.positions.push_back(all[i]);
  out.weights = sel.weights;
  out.decay = sel.decay;
  out.factor.assign(static_cast<std::size_t>(steps), 1.0);
  for (std::size_t i = 1; i < out.positions.size(); ++i)
    for (std::int64_t s = out.positions[i - 1]; s < out.positions[i]; ++s)
      out.factor[static_cast<std::size_t>(s)] = out.decay[i - 1];
  return out;
}

}  // namespace wsm
