// Backend selection by name, and the CUDA entry points when CUDA is not compiled in.
#include <string>

#include "kernels/cuda_bench.h"
#include "kernels/merge.h"
#include "protocol/error.h"

namespace wsm::kernels {

std::unique_ptr<MergeBackend> make_backend(std::string_view name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") return make_cuda_backend({});
  if (name == "cublas") return make_cuda_backend({.use_cublas = true});
  if (name == "auto") return cuda_available() ? make_cuda_backend({}) : make_cpu_backend();
  throw Error("unknown merge backend '" + std::string(name) + "' (expected cpu, cuda, cublas or auto)");
}

#ifndef WSM_HAVE_CUDA
bool cuda_available() { return false; }

std::unique_ptr<MergeBackend> make_cuda_backend(const CudaOptions&) {
  throw Error("CUDA merge backend requested, but this wsm was built without CUDA (configure with -DWSM_CUDA=ON "
              "and nvcc available)");
}

CudaKernelTimes cuda_kernel_bench(const CudaKernelBenchSpec&) {
  throw Error("CUDA kernel benchmark requested, but this wsm was built without CUDA");
}
#endif

}  // namespace wsm::kernels
