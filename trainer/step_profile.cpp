#include "wsm/trainer/step_profile.h"

#include <cstdlib>
#include <string_view>

namespace wsm::trainer {

bool StepProfile::requested() {
  const char* v = std::getenv("WSM_PROFILE");
  return v && *v && std::string_view(v) != "0";
}

void StepProfile::print(std::FILE* out) const {
  static constexpr const char* kNames[] = {
      "encoder fwd", "layernorm fwd", "matmul fwd", "attention fwd", "gelu fwd", "residual fwd",
      "softmax+CE fwd", "softmax+CE bwd", "matmul bwd", "layernorm bwd", "attention bwd", "gelu bwd",
      "residual bwd", "encoder bwd", "zero grads", "clip grad norm", "adamw", "between steps (data, log)"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == std::size_t(Stage::kCount));
  double total = 0;
  for (double s : seconds_) total += s;
  if (steps_ == 0 || total <= 0) return;
  std::fprintf(out, "profile over %lld steps (WSM_PROFILE): %.1f ms per step\n", (long long)steps_,
               1e3 * total / double(steps_));
  for (std::size_t i = 0; i < seconds_.size(); ++i)
    std::fprintf(out, "  %-26s %8.2f ms %5.1f%%\n", kNames[i], 1e3 * seconds_[i] / double(steps_),
                 100.0 * seconds_[i] / total);
}

}  // namespace wsm::trainer
