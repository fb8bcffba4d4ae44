#include "trainer/layers_cpu.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

// OpenBLAS's thread control, absent from other BLAS builds (then only OpenMP is set).
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace wsm::trainer::cpu {
namespace {

void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const float* A, int lda, const float* B,
          int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, const double* A, int lda, const double* B,
          int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, 1.0, A, lda, B, ldb, beta, C, ldc);
}

// Below this much work a parallel region costs more than it saves (and spins on a busy machine).
inline bool big(std::size_t work) { return work >= (1u << 15); }

}  // namespace

void set_num_threads(int n) {
  omp_set_num_threads(n);
  if (openblas_set_num_threads) openblas_set_num_threads(n);
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
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* w, const F* b, int N, int C) {
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
void layernorm_backward(F* dinp, F* dw, F* db, const F* dout, const F* inp, const F* w, const F* mean,
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
  gemm(CblasNoTrans, CblasTrans, N, OC, IC, inp, IC, w, IC, F(0), out, OC);
  if (bias) {
#pragma omp parallel for if (big(std::size_t(N) * OC))
    for (int n = 0; n < N; ++n) {
      F* o = out + std::size_t(n) * OC;
      for (int j = 0; j < OC; ++j) o[j] += bias[j];
    }
  }
}

template <class F>
void matmul_backward(F* dinp, F* dw, F* dbias, const F* dout, const F* inp, const F* w, int N, int IC, int OC) {
  gemm(CblasNoTrans, CblasNoTrans, N, IC, OC, dout, OC, w, IC, F(1), dinp, IC);   // dinp += dout W
  gemm(CblasTrans, CblasNoTrans, OC, IC, N, dout, OC, inp, IC, F(1), dw, IC);     // dW += dout^T inp
  if (dbias) {
    // Column sums in 8-wide strips: rows are walked in order, so the result is thread-independent.
    const int strips = (OC + 7) / 8;
#pragma omp parallel for if (big(std::size_t(N) * OC))
    for (int s = 0; s < strips; ++s) {
      const int j0 = s * 8, j1 = std::min(OC, j0 + 8);
      F acc[8] = {};
      for (int n = 0; n < N; ++n) {
        const F* d = dout + std::size_t(n) * OC;
        for (int j = j0; j < j1; ++j) acc[j - j0] += d[j];
      }
      for (int j = j0; j < j1; ++j) dbias[j] += acc[j - j0];
    }
  }
}

template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const F scale = F(1) / std::sqrt(F(hs));
#pragma omp parallel for collapse(3) if (big(std::size_t(B) * T * T * C))
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h)
      for (int t = 0; t < T; ++t) {
        const F* q = qkv + (std::size_t(b) * T + t) * C3 + h * hs;
        F* a = att + ((std::size_t(b) * NH + h) * T + t) * T;
        F maxv = -1e30f;
        for (int t2 = 0; t2 <= t; ++t2) {
          const F* k = qkv + (std::size_t(b) * T + t2) * C3 + C + h * hs;
          F dot = 0;
#pragma omp simd reduction(+ : dot)
          for (int i = 0; i < hs; ++i) dot += q[i] * k[i];
          dot *= scale;
          a[t2] = dot;
          maxv = std::max(maxv, dot);
        }
        F sum = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          a[t2] = std::exp(a[t2] - maxv);
          sum += a[t2];
        }
        F inv = F(1) / sum;
        for (int t2 = 0; t2 < T; ++t2) a[t2] = t2 <= t ? a[t2] * inv : F(0);
        F* o = out + (std::size_t(b) * T + t) * C + h * hs;
        for (int i = 0; i < hs; ++i) o[i] = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          const F* v = qkv + (std::size_t(b) * T + t2) * C3 + 2 * C + h * hs;
          F w = a[t2];
#pragma omp simd
          for (int i = 0; i < hs; ++i) o[i] += w * v[i];
        }
      }
}

template <class F>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int C, int NH) {
  const int C3 = 3 * C, hs = C / NH;
  const F scale = F(1) / std::sqrt(F(hs));
  // One (b, h) per task: keys and values of a head are written by that task only.
#pragma omp parallel for collapse(2) if (big(std::size_t(B) * T * T * C))
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < NH; ++h) {
      std::vector<F> datt(T), dpre(T);
      for (int t = 0; t < T; ++t) {
        const F* a = att + ((std::size_t(b) * NH + h) * T + t) * T;
        const F* d = dout + (std::size_t(b) * T + t) * C + h * hs;
        const F* q = qkv + (std::size_t(b) * T + t) * C3 + h * hs;
        F* dq = dqkv + (std::size_t(b) * T + t) * C3 + h * hs;
        F dot_ad = 0;
        for (int t2 = 0; t2 <= t; ++t2) {
          const F* v = qkv + (std::size_t(b) * T + t2) * C3 + 2 * C + h * hs;
          F* dv = dqkv + (std::size_t(b) * T + t2) * C3 + 2 * C + h * hs;
          F s = 0;
#pragma omp simd reduction(+ : s)
          for (int i = 0; i < hs; ++i) {
            s += v[i] * d[i];
            dv[i] += a[t2] * d[i];
          }
          datt[t2] = s;
          dot_ad += a[t2] * s;
        }
        // softmax backward: dpre = a * (datt - sum(a * datt))
        for (int t2 = 0; t2 <= t; ++t2) dpre[t2] = a[t2] * (datt[t2] - dot_ad) * scale;
        for (int t2 = 0; t2 <= t; ++t2) {
          const F* k = qkv + (std::size_t(b) * T + t2) * C3 + C + h * hs;
          F* dk = dqkv + (std::size_t(b) * T + t2) * C3 + C + h * hs;
          F g = dpre[t2];
#pragma omp simd
          for (int i = 0; i < hs; ++i) {
            dq[i] += g * k[i];
            dk[i] += g * q[i];
          }
        }
      }
    }
}

namespace {
template <class F>
constexpr F kGeluScale = F(0.7978845608028654);  // sqrt(2 / pi)
}

template <class F>
void gelu_forward(F* out, const F* inp, int N) {
#pragma omp parallel for if (big(std::size_t(N)))
  for (int i = 0; i < N; ++i) {
    F x = inp[i];
    F cube = F(0.044715) * x * x * x;
    out[i] = F(0.5) * x * (F(1) + std::tanh(kGeluScale<F> * (x + cube)));
  }
}

template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, int N) {
#pragma omp parallel for if (big(std::size_t(N)))
  for (int i = 0; i < N; ++i) {
    F x = inp[i];
    F cube = F(0.044715) * x * x * x;
    F arg = kGeluScale<F> * (x + cube);
    F th = std::tanh(arg);
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
void softmax_crossentropy_forward(F* probs, F* losses, const F* logits, const std::int32_t* targets, int N, int V) {
#pragma omp parallel for if (big(std::size_t(N) * V))
  for (int n = 0; n < N; ++n) {
    const F* z = logits + std::size_t(n) * V;
    F* p = probs + std::size_t(n) * V;
    F maxv = z[0];
    for (int i = 1; i < V; ++i) maxv = std::max(maxv, z[i]);
    F sum = 0;
    for (int i = 0; i < V; ++i) {
      p[i] = std::exp(z[i] - maxv);
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
