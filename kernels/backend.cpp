// Backend selection by name, and the CUDA entry points when CUDA is not compiled in.
#include <string>

#include "wsm/kernels/cuda_bench.h"
#include "wsm/kernels/merge.h"
#include "wsm/core/error.h"

namespace wsm::kernels {

BackendKind parse_backend_kind(std::string_view name) {
  for (const auto& [text, kind] : kBackendKindNames)
    if (name == text) return kind;
  throw Error("unknown merge backend '" + std::string(name) + "' (expected cpu, cuda, cublas or auto)");
}

std::string_view backend_kind_name(BackendKind kind) {
  for (const auto& [text, k] : kBackendKindNames)
    if (k == kind) return text;
  return "?";
}

bool backend_uses_gpu(BackendKind kind) {
  return kind == BackendKind::cuda || kind == BackendKind::cublas ||
         (kind == BackendKind::automatic && cuda_available());
}

std::unique_ptr<MergeBackend> make_backend(BackendKind kind) {
  switch (kind) {
    case BackendKind::cpu: return make_cpu_backend();
    case BackendKind::cuda: return make_cuda_backend({});
    case BackendKind::cublas: return make_cuda_backend({.use_cublas = true});
    case BackendKind::automatic: return cuda_available() ? make_cuda_backend({}) : make_cpu_backend();
  }
  throw Error("unknown merge backend");
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
