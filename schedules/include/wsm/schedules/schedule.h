#pragma once
// Learning-rate schedules as functions of the step, described by one small value type that parses
// from and prints back to a short text form:
//   "warmup=500,stable,peak=3e-4"                          linear warmup then constant (WSM's default)
//   "wsd:warmup=500,decay=2000,shape=1-sqrt,floor=0,total=20000,peak=3e-4"
//   "cosine:warmup=500,total=20000,floor=0.1,peak=3e-4"
//   "inverse-sqrt:warmup=500,peak=3e-4"   "linear:warmup=500,total=20000,peak=3e-4"
#include <cstdint>
#include <string>
#include <string_view>

#include "wsm/schedules/decay.h"

namespace wsm {

enum class ScheduleKind { stable, wsd, cosine, inverse_sqrt, linear };

struct Schedule {
  ScheduleKind kind = ScheduleKind::stable;
  double peak = 3e-4;
  std::int64_t warmup = 0;        // linear warmup steps from 0 to peak
  std::int64_t total = 0;         // end step (wsd, cosine, linear); 0 = open-ended (stable, inverse-sqrt)
  std::int64_t decay = 0;         // wsd: length of the final decay phase in steps
  DecayShape decay_shape = DecayShape::one_minus_sqrt;  // wsd only
  double floor = 0.0;             // minimum LR as a fraction of peak at the end of a decay

  // LR used by the update at `step` (0-based): warmup gives peak * (step+1) / warmup, so the last
  // warmup step runs at peak. Throws wsm::Error when the kind needs `total` and it is 0.
  double lr_at(std::int64_t step) const;
  // wsd, cosine and linear need an end step; a text form may leave it out ("wsd:decay=2000") and
  // let the run length fill it in via with_total().
  bool needs_total() const;
  Schedule with_total(std::int64_t steps) const;  // sets total when it is 0 and needed; validates
  std::string to_string() const;  // parse(to_string()) == *this
  bool operator==(const Schedule&) const = default;
};

Schedule parse_schedule(std::string_view text);  // throws wsm::Error naming the bad part

}  // namespace wsm
