#pragma once
// Error checks that turn a failed CUDA or cuBLAS call into a wsm::Error naming the call.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "wsm/core/error.h"

namespace wsm::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("CUDA: ") + what + ": cuBLAS status " + std::to_string(int(s)));
}

}  // namespace wsm::cuda
