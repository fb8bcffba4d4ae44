#include "trainer/sgemm_cpu.h"

#include <dlfcn.h>
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "trainer/blas_loader.h"

namespace wsm::trainer::cpu {
namespace {

// dnnl_sgemm as declared in oneDNN's dnnl.h (v1.0 and later: row-major, dnnl_dim_t = int64_t,
// returns dnnl_status_t, 0 = success). Declared here so that only the runtime package is needed.
using DnnlSgemm = int (*)(char transa, char transb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                          const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                          std::int64_t ldc);

DnnlSgemm load_dnnl() {
  const char* force = std::getenv("WSM_SGEMM");
  if (force && std::string_view(force) == "blas") return nullptr;
  // The handle is kept for the life of the process (the function pointer lives in it).
  void* lib = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libdnnl.so.3", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return nullptr;
  return reinterpret_cast<DnnlSgemm>(dlsym(lib, "dnnl_sgemm"));
}

DnnlSgemm dnnl() {
  static const DnnlSgemm fn = load_dnnl();  // thread-safe one-time initialisation
  return fn;
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  // oneDNN parallelises with OpenMP. The trainer's pool already runs one GEMM per thread, so every
  // thread that calls here first sets OpenMP to one thread (the setting is per thread): no second set
  // of threads, and no split of a sum across threads that would depend on their number.
  thread_local const bool single_threaded = (omp_set_num_threads(1), true);
  (void)single_threaded;
  if (DnnlSgemm fn = dnnl()) {
    // oneDNN checks its arguments before it touches C; on an error the BLAS gets the same call.
    if (fn(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == 0) return;
  }
  blas().sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
               A, lda, B, ldb, beta, C, ldc);
}

SgemmLib sgemm_library() { return dnnl() ? SgemmLib::kOneDnn : SgemmLib::kBlas; }

const char* to_string(SgemmLib lib) { return lib == SgemmLib::kOneDnn ? "oneDNN" : "BLAS"; }

}  // namespace wsm::trainer::cpu
