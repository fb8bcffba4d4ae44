#include "kernels/cublas_loader.h"

#include <dlfcn.h>

#include <atomic>
#include <string>

#include "wsm/core/error.h"

namespace wsm::kernels::cuda {
namespace {

std::atomic<bool> g_loaded{false};

template <class F>
void resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(::dlsym(lib, name));
  if (!fn) throw Error(std::string("cuBLAS: ") + WSM_CUBLAS_SONAME + " has no symbol " + name);
}

CublasApi load() {
  // The soname first (LD_LIBRARY_PATH, the executable's run path, the system), then the toolkit
  // wsm was built against. The handle is never closed: the library stays for the process.
  void* lib = ::dlopen(WSM_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = ::dlopen(WSM_CUBLAS_FALLBACK_PATH, RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    throw Error(std::string("cuBLAS: cannot load ") + WSM_CUBLAS_SONAME + " (nor " + WSM_CUBLAS_FALLBACK_PATH +
                "): " + ::dlerror() + "; install the CUDA toolkit's cuBLAS or use the cpu backend");
  CublasApi api;
  resolve(lib, "cublasCreate_v2", api.create);
  resolve(lib, "cublasDestroy_v2", api.destroy);
  resolve(lib, "cublasSetStream_v2", api.set_stream);
  resolve(lib, "cublasSgemm_v2", api.sgemm);
  resolve(lib, "cublasGemmEx", api.gemm_ex);
  g_loaded = true;
  return api;
}

}  // namespace

const CublasApi& cublas() {
  static const CublasApi api = load();  // a failed load throws and is retried on the next call
  return api;
}

bool cublas_loaded() { return g_loaded; }

}  // namespace wsm::kernels::cuda
