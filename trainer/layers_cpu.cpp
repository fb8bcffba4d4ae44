#include "trainer/layers_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "trainer/blas_loader.h"
#include "trainer/sgemm_cpu.h"
#include "trainer/thread_pool.h"
#include "trainer/vec_math.h"

// Runtime dispatch for the elementwise kernels: AVX-512 and AVX2 builds of a function beside the
// portable one, picked once at load time (GCC function multiversioning), so the build itself stays
// portable. Same source and the same operations per element; the vector width changes only how the
// `omp simd` sums are grouped, which the thread count never does.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WSM_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WSM_SIMD_CLONES
#endif

namespace wsm::trainer::cpu {
namespace {

// C = alpha op(A) op(B) + beta C, row-major. Every call is single-threaded; the parallelism is the
// pool's, over fixed blocks, so each output element comes from the same call whatever the thread
// count, and results are bit-identical for 1 and N threads.
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  sgemm(ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, double alpha, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc) {
  blas().dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Work is cut into blocks of fixed size: rows for row-wise layers and matmuls, elements for
// elementwise ones. A block is one task of parallel_for; small inputs make a single task.
constexpr int kRowBlock = 128;
constexpr int kElemBlock = 1 << 15;
inline int blocks_of(int n, int block) { return (n + block - 1) / block; }

// Runs fn(begin, count) over [0, n) in blocks of `block`, in parallel.
template <class Fn>
void for_blocks(int n, int block, Fn&& fn) {
  parallel_for(blocks_of(n, block), [&](int b) { fn(b * block, std::min(block, n - b * block)); });
}

// Scratch that lives as long as the thread: no allocation per step once it has grown. One buffer
// per Use, so two callers never share one.
enum class Use { kAttention, kLayerNorm };
template <class F, Use U>
F* thread_scratch(std::size_t n) {
  static thread_local std::vector<F> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

}  // namespace

void set_num_threads(int n) {
  set_pool_threads(n);
  // The pool is the only source of threads: OpenMP (oneDNN's runtime, see sgemm_cpu.cpp) and
  // OpenBLAS (set when it is loaded, blas_loader.cpp) run one each.
  omp_set_num_threads(1);
}

template <class F>
void encoder_forward(F* out, const std::int32_t* tok, const F* wte, const F* wpe, int B, int T, int C) {
  for_blocks(B * T, kRowBlock, [&](int r0, int rows) {
    for (int r = r0; r < r0 + rows; ++r) {
      F* o = out + std::size_t(r) * C;
      const F* e = wte + std::size_t(tok[r]) * C;
      const F* p = wpe + std::size_t(r % T) * C;
      for (int i = 0; i < C; ++i) o[i] = e[i] + p[i];
    }
  });
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

namespace {

template <class F>
WSM_SIMD_CLONES void layernorm_forward_rows(F* __restrict out, F* mean, F* rstd, const F* __restrict inp,
                                            const F* __restrict w, const F* __restrict b, int rows, int C) {
  const F eps = F(1e-5);
  for (int n = 0; n < rows; ++n) {
    const F* x = inp + std::size_t(n) * C;
    F m = 0;
#pragma omp simd reduction(+ : m)
    for (int i = 0; i < C; ++i) m += x[i];
    m /= C;
    F v = 0;
#pragma omp simd reduction(+ : v)
    for (int i = 0; i < C; ++i) v += (x[i] - m) * (x[i] - m);
    v /= C;
    const F s = F(1) / std::sqrt(v + eps);
    F* o = out + std::size_t(n) * C;
    for (int i = 0; i < C; ++i) o[i] = (x[i] - m) * s * w[i] + b[i];
    mean[n] = m;
    rstd[n] = s;
  }
}

// dinp of a block of rows, and that block's partial dw/db (summed over its rows in order).
template <class F>
WSM_SIMD_CLONES void layernorm_backward_rows(F* __restrict dinp, F* __restrict dw, F* __restrict db,
                                             const F* __restrict dout, const F* __restrict inp, const F* __restrict w,
                                             const F* mean, const F* rstd, int rows, int C) {
  for (int i = 0; i < C; ++i) dw[i] = db[i] = F(0);
  for (int n = 0; n < rows; ++n) {
    const F* d = dout + std::size_t(n) * C;
    const F* x = inp + std::size_t(n) * C;
    const F m = mean[n], s = rstd[n];
    F dnorm_mean = 0, dnorm_norm_mean = 0;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
    for (int i = 0; i < C; ++i) {
      const F norm = (x[i] - m) * s;
      const F dnorm = w[i] * d[i];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    F* di = dinp + std::size_t(n) * C;
    for (int i = 0; i < C; ++i) {
      const F norm = (x[i] - m) * s;
      const F dnorm = w[i] * d[i];
      di[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
      dw[i] += norm * d[i];
      db[i] += d[i];
    }
  }
}

}  // namespace

template <class F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* w, const F* b, int N, int C) {
  for_blocks(N, kRowBlock, [&](int n0, int rows) {
    const std::size_t off = std::size_t(n0) * C;
    layernorm_forward_rows(out + off, mean + n0, rstd + n0, inp + off, w, b, rows, C);
  });
}

template <class F>
void layernorm_backward(F* dinp, F* dw, F* db, const F* dout, const F* inp, const F* w, const F* mean,
                        const F* rstd, int N, int C) {
  // Each block of rows sums its own dw/db; the blocks' sums are then added in block order, so the
  // result does not depend on which thread ran which block.
  const int blocks = blocks_of(N, kRowBlock);
  F* partial = thread_scratch<F, Use::kLayerNorm>(std::size_t(blocks) * 2 * C);
  parallel_for(blocks, [&](int blk) {
    const int n0 = blk * kRowBlock, rows = std::min(kRowBlock, N - n0);
    const std::size_t off = std::size_t(n0) * C;
    F* pw = partial + std::size_t(blk) * 2 * C;
    layernorm_backward_rows(dinp + off, pw, pw + C, dout + off, inp + off, w, mean + n0, rstd + n0, rows, C);
  });
  for (int blk = 0; blk < blocks; ++blk)
    for (int i = 0; i < C; ++i) {
      dw[i] += partial[std::size_t(blk) * 2 * C + i];
      db[i] += partial[std::size_t(blk) * 2 * C + C + i];
    }
}

template <class F>
void matmul_forward(F* out, const F* inp, const F* w, const F* bias, int N, int IC, int OC) {
  // One block of rows per task: its GEMM, then its bias while the rows are still in cache.
  for_blocks(N, kRowBlock, [&](int n0, int rows) {
    F* o = out + std::size_t(n0) * OC;
    gemm(CblasNoTrans, CblasTrans, rows, OC, IC, F(1), inp + std::size_t(n0) * IC, IC, w, IC, F(0), o, OC);
    if (bias)
      for (int n = 0; n < rows; ++n)
        for (int j = 0; j < OC; ++j) o[std::size_t(n) * OC + j] += bias[j];
  });
}

template <class F>
void matmul_backward(F* dinp, F* dw, F* dbias, const F* dout, const F* inp, const F* w, int N, int IC, int OC) {
  // Two kinds of independent tasks in one parallel loop: blocks of input rows (dinp += dout W) and
  // blocks of output features (dW += dout^T inp, dbias += column sums of dout). A feature block sums
  // over all N rows in order, so its sums do not depend on the threads.
  constexpr int kFeatBlock = 32;
  const int row_blocks = blocks_of(N, kRowBlock), feat_blocks = blocks_of(OC, kFeatBlock);
  parallel_for(row_blocks + feat_blocks, [&](int task) {
    if (task < row_blocks) {
      const int n0 = task * kRowBlock, rows = std::min(kRowBlock, N - n0);
      gemm(CblasNoTrans, CblasNoTrans, rows, IC, OC, F(1), dout + std::size_t(n0) * OC, OC, w, IC, F(1),
           dinp + std::size_t(n0) * IC, IC);
      return;
    }
    const int j0 = (task - row_blocks) * kFeatBlock, cols = std::min(kFeatBlock, OC - j0);
    gemm(CblasTrans, CblasNoTrans, cols, IC, N, F(1), dout + j0, OC, inp, IC, F(1), dw + std::size_t(j0) * IC, IC);
    if (dbias) {
      F acc[kFeatBlock] = {};
      for (int n = 0; n < N; ++n) {
        const F* d = dout + std::size_t(n) * OC + j0;
        for (int j = 0; j < cols; ++j) acc[j] += d[j];
      }
      for (int j = 0; j < cols; ++j) dbias[j0 + j] += acc[j];
    }
  });
}

namespace {

template <class F>
struct SoftmaxSums {
  F max, sum;  // of the inputs, and of exp(input - max): log(sum) + max is their log-sum-exp
};

// p[0, n) = softmax(z[0, n)), n >= 1, p == z allowed (the attention rows are done in place); the one
// softmax of the attention and of the cross-entropy. Inlined into its callers' SIMD clones.
template <class F>
[[gnu::always_inline]] inline SoftmaxSums<F> softmax(F* p, const F* z, int n) {
  F maxv = z[0];
#pragma omp simd reduction(max : maxv)
  for (int i = 1; i < n; ++i) maxv = std::max(maxv, z[i]);
  F sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < n; ++i) {
    p[i] = vexp(z[i] - maxv);
    sum += p[i];
  }
  const F inv = F(1) / sum;
  for (int i = 0; i < n; ++i) p[i] *= inv;
  return {maxv, sum};
}

// Row t of the causal softmax: a[0, n) = softmax(a[0, n)), a[n, len) = 0 (the masked future).
template <class F>
WSM_SIMD_CLONES void causal_softmax_row(F* __restrict a, int n, int len) {
  softmax(a, a, n);
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

// Per (batch, head) the attention is small GEMMs and a row softmax, one task each. The score GEMM
// computes the full T x T square; the softmax then zeroes the future, so P v is the causal product.
template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const F scale = F(1) / std::sqrt(F(hs));
  parallel_for(B * NH, [&](int bh) {
    const int b = bh / NH, h = bh % NH;
    const F* q = qkv + std::size_t(b) * T * C3 + h * hs;
    const F* k = q + C;
    const F* v = q + 2 * C;
    F* a = att + std::size_t(bh) * T * T;
    gemm(CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3, F(0), a, T);  // a = q k^T / sqrt(hs)
    for (int t = 0; t < T; ++t) causal_softmax_row(a + std::size_t(t) * T, t + 1, T);
    gemm(CblasNoTrans, CblasNoTrans, T, hs, T, F(1), a, T, v, C3, F(0), out + std::size_t(b) * T * C + h * hs, C);
  });
}

template <class F>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const F scale = F(1) / std::sqrt(F(hs));
  // The q, k, v columns of a head are written by its task only.
  parallel_for(B * NH, [&](int bh) {
    const int b = bh / NH, h = bh % NH;
    const std::size_t off = std::size_t(b) * T * C3 + h * hs;
    const F *q = qkv + off, *k = q + C, *v = q + 2 * C;
    F *dq = dqkv + off, *dk = dq + C, *dv = dq + 2 * C;
    const F* dy = dout + std::size_t(b) * T * C + h * hs;
    const F* a = att + std::size_t(bh) * T * T;
    F* ds = thread_scratch<F, Use::kAttention>(std::size_t(T) * T);
    gemm(CblasNoTrans, CblasTrans, T, T, hs, F(1), dy, C, v, C3, F(0), ds, T);  // d(probs) = dy v^T
    for (int t = 0; t < T; ++t)
      causal_softmax_backward_row(ds + std::size_t(t) * T, a + std::size_t(t) * T, t + 1, T, scale);
    gemm(CblasNoTrans, CblasNoTrans, T, hs, T, F(1), ds, T, k, C3, F(1), dq, C3);  // dq += ds k
    gemm(CblasTrans, CblasNoTrans, T, hs, T, F(1), ds, T, q, C3, F(1), dk, C3);    // dk += ds^T q
    gemm(CblasTrans, CblasNoTrans, T, hs, T, F(1), a, T, dy, C, F(1), dv, C3);     // dv += a^T dy
  });
}

namespace {

template <class F>
constexpr F kGeluScale = F(0.7978845608028654);  // sqrt(2 / pi)

template <class F>
WSM_SIMD_CLONES void gelu_forward_block(F* __restrict out, const F* __restrict inp, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) {
    F x = inp[i];
    F cube = F(0.044715) * x * x * x;
    out[i] = F(0.5) * x * (F(1) + vtanh(kGeluScale<F> * (x + cube)));
  }
}

template <class F>
WSM_SIMD_CLONES void gelu_backward_block(F* __restrict dinp, const F* __restrict inp, const F* __restrict dout, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) {
    F x = inp[i];
    F cube = F(0.044715) * x * x * x;
    F arg = kGeluScale<F> * (x + cube);
    F th = vtanh(arg);
    F sech2 = F(1) - th * th;
    F local = F(0.5) * (F(1) + th) + x * F(0.5) * sech2 * kGeluScale<F> * (F(1) + F(3) * F(0.044715) * x * x);
    dinp[i] += local * dout[i];
  }
}

}  // namespace

template <class F>
void gelu_forward(F* out, const F* inp, int N) {
  for_blocks(N, kElemBlock, [&](int i0, int n) { gelu_forward_block(out + i0, inp + i0, n); });
}

template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, int N) {
  for_blocks(N, kElemBlock, [&](int i0, int n) { gelu_backward_block(dinp + i0, inp + i0, dout + i0, n); });
}

template <class F>
void residual_forward(F* out, const F* a, const F* b, int N) {
  for_blocks(N, kElemBlock, [&](int i0, int n) {
    for (int i = i0; i < i0 + n; ++i) out[i] = a[i] + b[i];
  });
}

template <class F>
void residual_backward(F* da, F* db, const F* dout, int N) {
  for_blocks(N, kElemBlock, [&](int i0, int n) {
    for (int i = i0; i < i0 + n; ++i) {
      da[i] += dout[i];
      db[i] += dout[i];
    }
  });
}

namespace {

template <class F>
WSM_SIMD_CLONES void softmax_crossentropy_rows(F* __restrict probs, F* __restrict losses, const F* __restrict logits,
                                               const std::int32_t* targets, int rows, int V) {
  for (int n = 0; n < rows; ++n) {
    const F* z = logits + std::size_t(n) * V;
    const SoftmaxSums<F> s = softmax(probs + std::size_t(n) * V, z, V);
    // log-sum-exp form keeps the loss accurate where p[target] underflows
    losses[n] = std::log(s.sum) + s.max - z[targets[n]];
  }
}

}  // namespace

template <class F>
void softmax_crossentropy_forward(F* probs, F* losses, const F* logits, const std::int32_t* targets, int N, int V) {
  for_blocks(N, kRowBlock, [&](int n0, int rows) {
    const std::size_t off = std::size_t(n0) * V;
    softmax_crossentropy_rows(probs + off, losses + n0, logits + off, targets + n0, rows, V);
  });
}

template <class F>
void softmax_crossentropy_backward(F* dlogits, const F* probs, const std::int32_t* targets, F dloss, int N, int V) {
  for_blocks(N, kRowBlock, [&](int n0, int rows) {
    for (int n = n0; n < n0 + rows; ++n) {
      const F* p = probs + std::size_t(n) * V;
      F* d = dlogits + std::size_t(n) * V;
      for (int i = 0; i < V; ++i) d[i] += (p[i] - (i == targets[n] ? F(1) : F(0))) * dloss;
    }
  });
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
