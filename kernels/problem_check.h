#pragma once
// Argument checks every backend runs before touching memory (internal to kernels/).
#include "wsm/kernels/merge.h"

namespace wsm::kernels {

// Throws wsm::Error naming the bad argument: weights not M x K, a non-float dtype, a null buffer.
void check_problem(const MergeProblem& problem, std::string_view backend);

}  // namespace wsm::kernels
