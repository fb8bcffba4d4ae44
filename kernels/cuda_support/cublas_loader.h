#pragma once
// cuBLAS, loaded on first use with dlopen instead of linked. Linked, it costs every wsm command
// (`wsm status`, `wsm weights`, a CPU merge) ~0.16 s and ~200 MB of RSS at start-up, since the
// dynamic loader maps and relocates libcublas and libcublasLt before main. CUDA builds only. The
// five entry points wsm uses are all it resolves.
#include <cublas_v2.h>

namespace wsm::cuda {

// cublasGemmEx is overloaded (a wrapper for the older compute-type argument), so its type is spelled out.
using CublasGemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                        const void*, const void*, cudaDataType, int, const void*, cudaDataType, int,
                                        const void*, void*, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  CublasGemmEx gemm_ex = nullptr;
};

// Loads libcublas on the first call (thread-safe) and returns its entry points; throws
// wsm::Error naming the library and dlerror() when it cannot be loaded or lacks a symbol.
// Where it looks, in order: $WSM_CUBLAS_PATH (a file), the soname (LD_LIBRARY_PATH, the
// executable's run path, the system's library cache), then beside the CUDA runtime this process
// loaded. No path of the build machine is compiled in.
const CublasApi& cublas();

// Whether cublas() has loaded the library yet (for the test that start-up does not).
bool cublas_loaded();

// Owner of a cuBLAS handle (created through the loader).
class CublasHandle {
 public:
  CublasHandle() : h_(create()) {}
  ~CublasHandle() {
    if (h_) cublas().destroy(h_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  static cublasHandle_t create();
  cublasHandle_t h_ = nullptr;
};

}  // namespace wsm::cuda
