#include "kernels/cuda_support/cublas_loader.h"

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "kernels/cuda_support/error_check.h"
#include "wsm/core/error.h"

namespace wsm::cuda {
namespace {

std::atomic<bool> g_loaded{false};

template <class F>
void resolve(void* lib, const char* name, F& fn) {
  fn = reinterpret_cast<F>(::dlsym(lib, name));
  if (!fn) throw Error(std::string("cuBLAS: ") + WSM_CUBLAS_SONAME + " has no symbol " + name);
}

// The directory of the CUDA runtime library this process loaded (empty when it is linked statically),
// where a toolkit install keeps libcublas too.
std::string beside_cuda_runtime() {
  Dl_info info{};
  if (!::dladdr(reinterpret_cast<const void*>(&cudaGetDeviceCount), &info) || !info.dli_fname) return {};
  const std::filesystem::path runtime(info.dli_fname);
  if (runtime.filename().string().rfind("libcudart", 0) != 0) return {};
  return (runtime.parent_path() / WSM_CUBLAS_SONAME).string();
}

void* open_library(std::string& tried) {
  if (const char* env = std::getenv("WSM_CUBLAS_PATH"); env && *env) {
    tried = std::string("WSM_CUBLAS_PATH=") + env;
    return ::dlopen(env, RTLD_NOW | RTLD_LOCAL);  // the user's choice: no silent fallback
  }
  tried = WSM_CUBLAS_SONAME;
  if (void* lib = ::dlopen(WSM_CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL)) return lib;
  const std::string beside = beside_cuda_runtime();
  if (beside.empty()) return nullptr;
  tried += " (nor " + beside + ")";
  return ::dlopen(beside.c_str(), RTLD_NOW | RTLD_LOCAL);
}

CublasApi load() {
  // The handle is never closed: the library stays for the process.
  std::string tried;
  void* lib = open_library(tried);
  if (!lib)
    throw Error("cuBLAS: cannot load " + tried + ": " + ::dlerror() +
                "; install the CUDA toolkit's cuBLAS, set WSM_CUBLAS_PATH to it, or use the cpu backend");
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

cublasHandle_t CublasHandle::create() {
  cublasHandle_t h = nullptr;
  check(cublas().create(&h), "cublasCreate");
  return h;
}

}  // namespace wsm::cuda
