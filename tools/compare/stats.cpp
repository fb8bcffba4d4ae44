#include "tools/compare/stats.h"

#include <cmath>
#include <limits>

namespace wsm::tools::compare {

double t_quantile_975(std::size_t dof) {
  // Exact to 3 decimals for small samples (standard tables); the normal quantile beyond 30.
  static constexpr double kTable[] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                      2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                      2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (dof == 0) return std::numeric_limits<double>::infinity();
  if (dof <= std::size(kTable)) return kTable[dof - 1];
  return 1.960;
}

Summary summarize(std::span<const double> values) {
  Summary s;
  s.n = values.size();
  if (s.n == 0) return s;
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / double(s.n);
  if (s.n < 2) {
    s.half_ci = std::numeric_limits<double>::infinity();
    return s;
  }
  double ss = 0;
  for (double v : values) ss += (v - s.mean) * (v - s.mean);
  s.sd = std::sqrt(ss / double(s.n - 1));
  s.half_ci = t_quantile_975(s.n - 1) * s.sd / std::sqrt(double(s.n));
  return s;
}

}  // namespace wsm::tools::compare
