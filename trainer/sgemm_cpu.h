#pragma once
// The float GEMM of the CPU trainer. It is most of a training step, and the choice of library
// doubles or halves it: on an AVX-512 CPU, Debian's OpenBLAS 0.3.21 may pick its AVX2 (Haswell)
// kernels (it does on AMD Zen 5), while oneDNN's sgemm JIT-compiles for the CPU it finds. So
// oneDNN is used when its runtime library (Debian's libdnnl2) is installed, loaded with dlopen on
// first use, and the BLAS (cblas_sgemm, also loaded on first use: blas_loader.h) otherwise. WSM_SGEMM=blas forces the BLAS, for
// comparisons. Both run single-threaded, called from the trainer's thread pool (thread_pool.h).

namespace wsm::trainer::cpu {

enum class SgemmLib { kOneDnn, kBlas };

// C = alpha op(A) op(B) + beta C, row-major; op(X) = X^T where trans_x. A is M x K after op, B K x N.
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);

// Which library sgemm() calls (decided on the first call, then fixed for the process).
SgemmLib sgemm_library();
const char* to_string(SgemmLib lib);

}  // namespace wsm::trainer::cpu
