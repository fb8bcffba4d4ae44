#pragma once
// Device-resident timing of the CUDA merge kernels (for `wsm bench merge --kernel-only`): inputs and
// outputs live in device memory, so the figures are the kernels' own bandwidth, compared with a
// device-to-device cudaMemcpy of the same bytes measured in the same run.
#include <cstddef>
#include <string>

#include "wsm/core/dtype.h"

namespace wsm::kernels {

struct CudaKernelBenchSpec {
  std::size_t count = 0;  // elements per tensor
  int inputs = 8;         // K
  int outputs = 1;        // M
  DType in_dtype = DType::bf16;
  DType out_dtype = DType::bf16;
  int repeats = 10;
};

struct CudaKernelTimes {
  std::string device;         // e.g. "NVIDIA H100 80GB HBM3"
  double fused_s = 0;         // per merge, fused kernel
  double cublas_s = 0;        // per merge, convert + GemmEx + round
  double memcpy_d2d_s = 0;    // cudaMemcpy D2D of the same bytes (K inputs + M outputs)
  double bytes = 0;           // bytes the merge moves: K inputs read + M outputs written
};

// Throws wsm::Error without CUDA or without a device.
CudaKernelTimes cuda_kernel_bench(const CudaKernelBenchSpec& spec);

}  // namespace wsm::kernels
