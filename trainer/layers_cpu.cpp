#include "trainer/layers_cpu.h"

#include "trainer/sgemm_cpu.h"
#include "trainer/vec_math.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

// OpenBLAS's thread control, absent from other BLAS builds (then only OpenMP is set).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace wsm::trainer::cpu {
namespace {

// C = alpha op(A) op(B) + beta C, row-major. The GEMM libraries run single-threaded: the parallelism
// is ours, over fixed blocks, so each output element comes from the same call whatever the thread
// count and results are bit-identical for 1 and N threads. GEMMs are only called inside parallel
// regions (even small ones), where oneDNN does not start threads of its own.
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  sgemm(ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Runtime dispatch for the elementwise loops: AVX-512 and AVX2 builds of a function beside the
// portable one, picked once at load time (GCC function multiversioning), so the default build stays
// portable. Same source, same operation order per element; vector widths change only how `omp simd`
// reductions are grouped, which no thread count affects.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WSM_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WSM_SIMD_CLONES
#endif

// Below this much work a parallel region costs more than it saves (and spins on a busy machine).
inline bool big(std::size_t work) { return work >= (1u << 15); }

// Matmuls are cut into blocks of this many rows (of the output, or of dW); the blocks, not the
// threads, decide the arithmetic.
constexpr int kRowBlock = 128;
inline int blocks_of(int n, int block) { return (n + block - 1) / block; }

// Scratch that lives as long as the thread: no allocation per step once it has grown.
template <class F>
F* thread_scratch(std::size_t n) {
  static thread_local std::vector<F> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

}  // namespace

void set_num_threads(int n) {
  omp_set_num_threads(n);
  // One OpenMP pool does all the parallel work; a second (OpenBLAS's own) would spin against it.
  if (openblas_set_num_threads) openblas_set_num_threads(1);
}

template <class F>
void encoder_forward(F* out, const std::int32_t* tok, const F* wte, const F* wpe, int B, int T, int C) {
#pragma omp parallel for collapse(2) if (big(std::size_t(B) * T * C))
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      F* o = out + (std::size_t(b) * T + t) * C;
      const F* e = wte + std::size_t(tok[b * T + t]) * C;
      const F* p = wpe + std::size_t(t) * C;
      for (int i = 0; i < C; ++i) o[i] = e[i] + p[i];
    }
}

template <class F>
void encoder_backward(F* dwte, F* dwpe, const F* dout, const std::int32_t* tok, int B, int T, int C) {
  // Serial over positions: several positions may share a token row; the order stays fixed (bit-exact).
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      const F* d = dout + (std::size_t(b) * T + t) * C;
      F* e = dwte + std::size_t(tok[b * T + t]) * C;
      F* p = dwpe + std::size_t(t) * C;
      for (int i = 0; i < C; ++i) {
        e[i] += d[i];
        p[i] += d[i];
      }
    }
}

template <class F>
WSM_SIMD_CLONES void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* w, const F* b, int N, int C) {
  const F eps = F(1e-5);
#pragma omp parallel for if (big(std::size_t(N) * C))
  for (int n = 0; n < N; ++n) {
    const F* x = inp + std::size_t(n) * C;
    F m = 0;
#pragma omp simd reduction(+ : m)
    for (int i = 0; i < C; ++i) m += x[i];
    m /= C;
    F v = 0;
#pragma omp simd reduction(+ : v)
    for (int i = 0; i < C; ++i) v += (x[i] - m) * (x[i] - m);
    v /= C;
    F s = F(1) / std::sqrt(v + eps);
    F* o = out + std::size_t(n) * C;
    for (int i = 0; i < C; ++i) o[i] = (x[i] - m) * s * w[i] + b[i];
    mean[n] = m;
    rstd[n] = s;
  }
}

template <class F>
WSM_SIMD_CLONES void layernorm_backward(F* dinp, F* dw, F* db, const F* dout, const F* inp, const F* w, const F* mean,
                        const F* rstd, int N, int C) {
  // dinp rows are independent; dw/db are reduced per column so the sum order never depends on threads.
#pragma omp parallel for if (big(std::size_t(N) * C))
  for (int n = 0; n < N; ++n) {
    const F* d = dout + std::size_t(n) * C;
    const F* x = inp + std::size_t(n) * C;
    F m = mean[n], s = rstd[n];
    F dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
    for (int i = 0; i < C; ++i) {
      F norm = (x[i] - m) * s;
      F dnorm = w[i] * d[i];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    F* di = dinp + std::size_t(n) * C;
    for (int i = 0; i < C; ++i) {
      F norm = (x[i] - m) * s;
      F dnorm = w[i] * d[i];
      di[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
    }
  }
#pragma omp parallel for if (big(std::size_t(N) * C))
  for (int i = 0; i < C; ++i) {
    F sw = 0, sb = 0;
    for (int n = 0; n < N; ++n) {
      F d = dout[std::size_t(n) * C + i];
      sw += (inp[std::size_t(n) * C + i] - mean[n]) * rstd[n] * d;
      sb += d;
    }
    dw[i] += sw;
    db[i] += sb;
  }
}

template <class F>
void matmul_forward(F* out, const F* inp, const F* w, const F* bias, int N, int IC, int OC) {
  // One block of rows per task: its GEMM, then its bias while the rows are still in cache.
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < blocks_of(N, kRowBlock); ++blk) {
    const int n0 = blk * kRowBlock, rows = std::min(kRowBlock, N - n0);
    F* o = out + std::size_t(n0) * OC;
    gemm(CblasNoTrans, CblasTrans, rows, OC, IC, F(1), inp + std::size_t(n0) * IC, IC, w, IC, F(0), o, OC);
    if (bias)
      for (int n = 0; n < rows; ++n)
        for (int j = 0; j < OC; ++j) o[std::size_t(n) * OC + j] += bias[j];
  }
}

template <class F>
void matmul_backward(F* dinp, F* dw, F* dbias, const F* dout, const F* inp, const F* w, int N, int IC, int OC) {
#pragma omp parallel
  {
    // dinp += dout W, by blocks of input rows
#pragma omp for schedule(static) nowait
    for (int blk = 0; blk < blocks_of(N, kRowBlock); ++blk) {
      const int n0 = blk * kRowBlock, rows = std::min(kRowBlock, N - n0);
      gemm(CblasNoTrans, CblasNoTrans, rows, IC, OC, F(1), dout + std::size_t(n0) * OC, OC, w, IC, F(1),
           dinp + std::size_t(n0) * IC, IC);
    }
    // dW += dout^T inp and dbias += column sums of dout, by blocks of output features: each block
    // sums over all N rows in order, so the sums do not depend on the threads.
    constexpr int kFeatBlock = 32;
#pragma omp for schedule(static)
    for (int blk = 0; blk < blocks_of(OC, kFeatBlock); ++blk) {
      const int j0 = blk * kFeatBlock, cols = std::min(kFeatBlock, OC - j0);
      gemm(CblasTrans, CblasNoTrans, cols, IC, N, F(1), dout + j0, OC, inp, IC, F(1), dw + std::size_t(j0) * IC, IC);
      if (dbias) {
        F acc[kFeatBlock] = {};
        for (int n = 0; n < N; ++n) {
          const F* d = dout + std::size_t(n) * OC + j0;
          for (int j = 0; j < cols; ++j) acc[j] += d[j];
        }
        for (int j = 0; j < cols; ++j) dbias[j0 + j] += acc[j];
      }
    }
  }
}

namespace {

// Row t of the causal softmax: a[0, n) = softmax(a[0, n)), a[n, len) = 0 (the masked future).
template <class F>
WSM_SIMD_CLONES void causal_softmax_row(F* __restrict a, int n, int len) {
  F maxv = a[0];
#pragma omp simd reduction(max : maxv)
  for (int i = 0; i < n; ++i) maxv = std::max(maxv, a[i]);
  F sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < n; ++i) {
    a[i] = vexp(a[i] - maxv);
    sum += a[i];
  }
  const F inv = F(1) / sum;
  for (int i = 0; i < n; ++i) a[i] *= inv;
  for (int i = n; i < len; ++i) a[i] = F(0);
}

// Softmax backward of one causal row, in place: d[0, n) = a * (d - sum(a * d)) * scale, zero beyond.
template <class F>
WSM_SIMD_CLONES void causal_softmax_backward_row(F* __restrict d, const F* __restrict a, int n, int len, F scale) {
  F dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int i = 0; i < n; ++i) dot += a[i] * d[i];
  for (int i = 0; i < n; ++i) d[i] = a[i] * (d[i] - dot) * scale;
  for (int i = n; i < len; ++i) d[i] = F(0);
}

}  // namespace

// Per (batch, head) the attention is three small GEMMs and a row softmax. The score GEMM computes
// the full T x T square; the softmax then zeroes the future, so P v is the causal product.
template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const F scale = F(1) / std::sqrt(F(hs));
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const F* q = qkv + std::size_t(b) * T * C3 + h * hs;
      const F* k = q + C;
      const F* v = q + 2 * C;
      F* a = att + (std::size_t(b) * NH + h) * T * T;
      gemm(CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3, F(0), a, T);  // a = q k^T / sqrt(hs)
      for (int t = 0; t < T; ++t) causal_softmax_row(a + std::size_t(t) * T, t + 1, T);
      gemm(CblasNoTrans, CblasNoTrans, T, hs, T, F(1), a, T, v, C3, F(0), out + std::size_t(b) * T * C + h * hs, C);
    }
}

template <class F>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const F scale = F(1) / std::sqrt(F(hs));
  // One (b, h) per task: the q, k, v columns of a head are written by that task only.
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      const std::size_t off = std::size_t(b) * T * C3 + h * hs;
      const F *q = qkv + off, *k = q + C, *v = q + 2 * C;
      F *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
      const F* dy = dout + std::size_t(b) * T * C + h * hs;
      const F* a = att + (std::size_t(b) * NH + h) * T * T;
      F* ds = thread_scratch<F>(std::size_t(T) * T);
      gemm(CblasNoTrans, CblasTrans, T, T, hs, F(1), dy, C, v, C3, F(0), ds, T);  // d(probs) = dy v^T
      for (int t = 0; t < T; ++t)
        causal_softmax_backward_row(ds + std::size_t(t) * T, a + std::size_t(t) * T, t + 1, T, scale);
      gemm(CblasNoTrans, CblasNoTrans, T, hs, T, F(1), ds, T, k, C3, F(1), dq, C3);  // dq += ds k
      gemm(CblasTrans, CblasNoTrans, T, hs, T, F(1), ds, T, q, C3, F(1), dk, C3);    // dk += ds^T q
      gemm(CblasTrans, CblasNoTrans, T, hs, T, F(1), a, T, dy, C, F(1), dv, C3);     // dv += a^T dy
    }
}

namespace {
template <class F>
constexpr F kGeluScale = F(0.7978845608028654);  // sqrt(2 / pi)
}

template <class F>
WSM_SIMD_CLONES void gelu_forward(F* __restrict out, const F* __restrict inp, int N) {
#pragma omp parallel for simd if (big(std::size_t(N)))
  for (int i = 0; i < N; ++i) {
    F x = inp[i];
    F cube = F(0.044715) * x * x * x;
    out[i] = F(0.5) * x * (F(1) + vtanh(kGeluScale<F> * (x + cube)));
  }
}

template <class F>
WSM_SIMD_CLONES void gelu_backward(F* __restrict dinp, const F* __restrict inp, const F* __restrict dout, int N) {
#pragma omp parallel for simd if (big(std::size_t(N)))
  for (int i = 0; i < N; ++i) {
    F x = inp[i];
    F cube = F(0.044715) * x * x * x;
    F arg = kGeluScale<F> * (x + cube);
    F th = vtanh(arg);
    F sech2 = F(1) - th * th;
    F local = F(0.5) * (F(1) + th) + x * F(0.5) * sech2 * kGeluScale<F> * (F(1) + F(3) * F(0.044715) * x * x);
    dinp[i] += local * dout[i];
  }
}

template <class F>
void residual_forward(F* out, const F* a, const F* b, int N) {
#pragma omp parallel for if (big(std::size_t(N)))
  for (int i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

template <class F>
void residual_backward(F* da, F* db, const F* dout, int N) {
#pragma omp parallel for if (big(std::size_t(N)))
  for (int i = 0; i < N; ++i) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

template <class F>
WSM_SIMD_CLONES void softmax_crossentropy_forward(F* __restrict probs, F* __restrict losses, const F* __restrict logits,
                                                  const std::int32_t* targets, int N, int V) {
#pragma omp parallel for if (big(std::size_t(N) * V))
  for (int n = 0; n < N; ++n) {
    const F* z = logits + std::size_t(n) * V;
    F* p = probs + std::size_t(n) * V;
    F maxv = z[0];
#pragma omp simd reduction(max : maxv)
    for (int i = 1; i < V; ++i) maxv = std::max(maxv, z[i]);
    F sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < V; ++i) {
      p[i] = vexp(z[i] - maxv);
      sum += p[i];
    }
    // log-sum-exp form keeps the loss accurate where p[target] underflows
    losses[n] = std::log(sum) + maxv - z[targets[n]];
    F inv = F(1) / sum;
    for (int i = 0; i < V; ++i) p[i] *= inv;
  }
}

template <class F>
void softmax_crossentropy_backward(F* dlogits, const F* probs, const std::int32_t* targets, F dloss, int N, int V) {
#pragma omp parallel for if (big(std::size_t(N) * V))
  for (int n = 0; n < N; ++n) {
    const F* p = probs + std::size_t(n) * V;
    F* d = dlogits + std::size_t(n) * V;
    for (int i = 0; i < V; ++i) d[i] += (p[i] - (i == targets[n] ? F(1) : F(0))) * dloss;
  }
}

#define WSM_INSTANTIATE(F)                                                                                    \
  template void encoder_forward<F>(F*, const std::int32_t*, const F*, const F*, int, int, int);                \
  template void encoder_backward<F>(F*, F*, const F*, const std::int32_t*, int, int, int);                     \
  template void layernorm_forward<F>(F*, F*, F*, const F*, const F*, const F*, int, int);                      \
  template void layernorm_backward<F>(F*, F*, F*, const F*, const F*, const F*, const F*, const F*, int, int); \
  template void matmul_forward<F>(F*, const F*, const F*, const F*, int, int, int);                             \
  template void matmul_backward<F>(F*, F*, F*, const F*, const F*, const F*, int, int, int);                   \
  template void attention_forward<F>(F*, F*, const F*, int, int, int, int);                                    \
  template void attention_backward<F>(F*, const F*, const F*, const F*, int, int, int, int);                   \
  template void gelu_forward<F>(F*, const F*, int);                                                            \
  template void gelu_backward<F>(F*, const F*, const F*, int);                                                 \
  template void residual_forward<F>(F*, const F*, const F*, int);                                              \
  template void residual_backward<F>(F*, F*, const F*, int);                                                   \
  template void softmax_crossentropy_forward<F>(F*, F*, const F*, const std::int32_t*, int, int);             \
  template void softmax_crossentropy_backward<F>(F*, const F*, const std::int32_t*, F, int, int);

WSM_INSTANTIATE(float)
WSM_INSTANTIATE(double)
#undef WSM_INSTANTIATE

}  // namespace wsm::trainer::cpu
