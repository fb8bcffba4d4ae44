#include "kernels/problem_check.h"

#include <string>

#include "wsm/core/error.h"

namespace wsm::kernels {

void check_problem(const MergeProblem& p, std::string_view backend) {
  const std::string who = "merge (" + std::string(backend) + " backend): ";
  const std::size_t k = p.inputs.size(), m = p.outputs.size();
  if (k == 0) throw Error(who + "no inputs");
  if (m == 0) throw Error(who + "no outputs");
  if (p.weights.size() != m * k)
    throw Error(who + "weights hold " + std::to_string(p.weights.size()) + " values, expected M x K = " +
                std::to_string(m) + " x " + std::to_string(k));
  for (std::size_t j = 0; j < k; ++j) {
    if (!is_float(p.inputs[j].dtype))
      throw Error(who + "input " + std::to_string(j) + " has dtype " + std::string(dtype_name(p.inputs[j].dtype)) +
                  ", expected f32/f16/bf16/f64");
    if (p.count > 0 && p.inputs[j].data == nullptr) throw Error(who + "input " + std::to_string(j) + " is null");
  }
  for (std::size_t o = 0; o < m; ++o) {
    if (!is_float(p.outputs[o].dtype))
      throw Error(who + "output " + std::to_string(o) + " has dtype " +
                  std::string(dtype_name(p.outputs[o].dtype)) + ", expected f32/f16/bf16/f64");
    if (p.count > 0 && p.outputs[o].data == nullptr) throw Error(who + "output " + std::to_string(o) + " is null");
  }
}

}  // namespace wsm::kernels
