#include "merger/daemon/sum_model.h"

#include <cmath>

namespace wsm::merger {

namespace {
bool close(double a, double b) { return std::abs(a - b) <= 1e-9 * std::max(std::abs(a), std::abs(b)); }
}  // namespace

std::optional<SumModel> sum_model(const MergeSpec& spec, std::span<const double> weights) {
  if (weights.empty()) return std::nullopt;
  bool uniform = true;
  for (double c : weights) uniform = uniform && close(c, weights.back());
  if (uniform && weights.back() > 0) return SumModel{1.0, false};
  // PMA's EMA: c_0 = (1-A)^k, c_j = A (1-A)^(k-j). Checked against the weights actually selected.
  if (!spec.ema()) return std::nullopt;
  const double a = spec.ema()->alpha;
  if (!(a > 0.0 && a < 1.0) || weights.size() < 2) return std::nullopt;
  const std::size_t k = weights.size() - 1;
  if (!close(weights[0], std::pow(1 - a, static_cast<double>(k)))) return std::nullopt;
  for (std::size_t j = 1; j <= k; ++j)
    if (!close(weights[j], a * std::pow(1 - a, static_cast<double>(k - j)))) return std::nullopt;
  return SumModel{1 - a, true};
}

}  // namespace wsm::merger
