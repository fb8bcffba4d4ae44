#pragma once
// Small-sample statistics for comparing methods over a few seeds: mean, sample standard deviation,
// and the two-sided 95% Student-t interval of a mean (the paired WSM - WSD difference per seed).
#include <cstddef>
#include <span>

namespace wsm::tools::compare {

struct Summary {
  std::size_t n = 0;
  double mean = 0;
  double sd = 0;        // sample standard deviation (n - 1); 0 when n < 2
  double half_ci = 0;   // 95% interval of the mean is mean +- half_ci; infinite when n < 2
};

Summary summarize(std::span<const double> values);

// The 0.975 quantile of Student's t with `dof` degrees of freedom (dof >= 1).
double t_quantile_975(std::size_t dof);

}  // namespace wsm::tools::compare
