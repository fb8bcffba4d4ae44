// Links wsm::schedules alone (no HDF5, Protobuf or ZeroMQ; run.cmake checks the executable's
// NEEDED entries): linear merge weights over 4 checkpoints are uniform, the decay view of 1-sqrt's
// weights equals their tail sums computed here, and a schedule's text form (fmt) reads back.
// Exits non-zero on a mismatch.
#include <cmath>
#include <cstdio>
#include <vector>

#include "wsm/schedules/decay.h"
#include "wsm/schedules/schedule.h"
#include "wsm/schedules/text.h"

int main() {
  int failures = 0;
  const std::vector<double> linear = wsm::merge_weights(wsm::parse_merge_spec("linear"), 4);
  for (double c : linear) failures += std::fabs(c - 0.25) > 1e-15;
  const std::vector<double> c = wsm::merge_weights(wsm::parse_merge_spec("1-sqrt"), 5);
  const std::vector<double> w = wsm::merge_weights_to_decay(c);
  double tail = 0;
  for (std::size_t i = c.size() - 1; i >= 1; --i) {
    tail += c[i];
    failures += std::fabs(w[i - 1] - tail) > 1e-12;
  }
  const std::string text = wsm::parse_schedule("warmup=500,stable,peak=3e-4").to_string();
  failures += wsm::parse_schedule(text).to_string() != text;
  failures += wsm::text::format_number(0.1) != "0.1";
  std::printf("consumer (schedules only): %s, 1-sqrt c0 %.6f; %d failures\n", text.c_str(), c[0], failures);
  return failures == 0 ? 0 : 1;
}
