#pragma once
// cuBLAS, loaded on first use with dlopen instead of linked. Linked, it costs every wsm command
// (`wsm status`, `wsm weights`, a CPU merge) ~0.16 s and ~200 MB of RSS at start-up, since the
// dynamic loader maps and relocates libcublas and libcublasLt before main. CUDA builds only,
// included from .cu files. The five entry points wsm uses are all it resolves.
#include <cublas_v2.h>

namespace wsm::kernels::cuda {

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
const CublasApi& cublas();

// Whether cublas() has loaded the library yet (for the test that start-up does not).
bool cublas_loaded();

}  // namespace wsm::kernels::cuda
