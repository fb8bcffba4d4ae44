#include "trainer/layers_cuda.h"

#include <cmath>

#include "kernels/cuda_support/cublas_loader.h"
#include "kernels/cuda_support/error_check.h"

namespace wsm::trainer::cuda {
namespace {

constexpr int kThreads = 256;
inline int blocks_for(std::size_t n) { return int((n + kThreads - 1) / kThreads); }
inline void launched(const char* what) { check(cudaGetLastError(), what); }

__global__ void encoder_forward_k(float* out, const std::int32_t* tok, const float* wte, const float* wpe, int B, int T, int C) {
  std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= std::size_t(B) * T * C) return;
  int c = int(i % C), bt = int(i / C), t = bt % T;
  out[i] = wte[std::size_t(tok[bt]) * C + c] + wpe[std::size_t(t) * C + c];
}

// One thread per (t, c): walks the batch in order, so dwpe is deterministic; dwte needs atomics
// because different positions may hold the same token.
__global__ void encoder_backward_k(float* dwte, float* dwpe, const float* dout, const std::int32_t* tok, int B, int T, int C) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= T * C) return;
  int t = i / C, c = i % C;
  float acc = 0;
  for (int b = 0; b < B; ++b) {
    float d = dout[(std::size_t(b) * T + t) * C + c];
    acc += d;
    atomicAdd(&dwte[std::size_t(tok[b * T + t]) * C + c], d);
  }
  dwpe[i] += acc;
}

// One warp per row.
__global__ void layernorm_forward_k(float* out, float* mean, float* rstd, const float* inp, const float* w,
                                    const float* b, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + std::size_t(row) * C;
  float s = 0;
  for (int i = lane; i < C; i += 32) s += x[i];
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  float m = s / C, v = 0;
  for (int i = lane; i < C; i += 32) v += (x[i] - m) * (x[i] - m);
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  float r = rsqrtf(v / C + 1e-5f);
  float* y = out + std::size_t(row) * C;
  for (int i = lane; i < C; i += 32) y[i] = (x[i] - m) * r * w[i] + b[i];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = r;
  }
}

__global__ void layernorm_backward_dinp_k(float* dinp, const float* dout, const float* inp, const float* w,
                                          const float* mean, const float* rstd, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* d = dout + std::size_t(row) * C;
  const float* x = inp + std::size_t(row) * C;
  float m = mean[row], r = rstd[row], dm = 0, dnm = 0;
  for (int i = lane; i < C; i += 32) {
    float dn = w[i] * d[i];
    dm += dn;
    dnm += dn * (x[i] - m) * r;
  }
  for (int o = 16; o > 0; o /= 2) {
    dm += __shfl_xor_sync(0xffffffffu, dm, o);
    dnm += __shfl_xor_sync(0xffffffffu, dnm, o);
  }
  dm /= C;
  dnm /= C;
  float* di = dinp + std::size_t(row) * C;
  for (int i = lane; i < C; i += 32) {
    float norm = (x[i] - m) * r;
    di[i] += (w[i] * d[i] - dm - norm * dnm) * r;
  }
}

__global__ void layernorm_backward_dw_k(float* dw, float* db, const float* dout, const float* inp, const float* mean,
                                        const float* rstd, int N, int C) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= C) return;
  float sw = 0, sb = 0;
  for (int n = 0; n < N; ++n) {
    float d = dout[std::size_t(n) * C + i];
    sw += (inp[std::size_t(n) * C + i] - mean[n]) * rstd[n] * d;
    sb += d;
  }
  dw[i] += sw;
  db[i] += sb;
}

__global__ void add_bias_k(float* out, const float* bias, int N, int OC) {
  std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < std::size_t(N) * OC) out[i] += bias[i % OC];
}

__global__ void bias_grad_k(float* dbias, const float* dout, int N, int OC) {
  int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= OC) return;
  float s = 0;
  for (int n = 0; n < N; ++n) s += dout[std::size_t(n) * OC + j];
  dbias[j] += s;
}

// One thread per (b, h, t) query row.
__global__ void attention_forward_k(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * NH * T) return;
  int t = idx % T, h = (idx / T) % NH, b = idx / (T * NH);
  int C3 = 3 * C, hs = C / NH;
  float scale = rsqrtf(float(hs));
  const float* q = qkv + (std::size_t(b) * T + t) * C3 + h * hs;
  float* a = att + ((std::size_t(b) * NH + h) * T + t) * T;
  float maxv = -1e30f;
  for (int t2 = 0; t2 <= t; ++t2) {
    const float* k = qkv + (std::size_t(b) * T + t2) * C3 + C + h * hs;
    float dot = 0;
    for (int i = 0; i < hs; ++i) dot += q[i] * k[i];
    dot *= scale;
    a[t2] = dot;
    maxv = fmaxf(maxv, dot);
  }
  float sum = 0;
  for (int t2 = 0; t2 <= t; ++t2) {
    a[t2] = expf(a[t2] - maxv);
    sum += a[t2];
  }
  float inv = 1.0f / sum;
  for (int t2 = 0; t2 < T; ++t2) a[t2] = t2 <= t ? a[t2] * inv : 0.0f;
  float* o = out + (std::size_t(b) * T + t) * C + h * hs;
  for (int i = 0; i < hs; ++i) {
    float s = 0;
    for (int t2 = 0; t2 <= t; ++t2) s += a[t2] * qkv[(std::size_t(b) * T + t2) * C3 + 2 * C + h * hs + i];
    o[i] = s;
  }
}

// dpre[b,h,t,t2] = att * (datt - sum(att * datt)) * scale, with datt = v[t2] . dout[t]
__global__ void attention_dpre_k(float* dpre, const float* dout, const float* qkv, const float* att, int B, int T,
                                 int C, int NH) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * NH * T) return;
  int t = idx % T, h = (idx / T) % NH, b = idx / (T * NH);
  int C3 = 3 * C, hs = C / NH;
  float scale = rsqrtf(float(hs));
  const float* a = att + ((std::size_t(b) * NH + h) * T + t) * T;
  float* dp = dpre + ((std::size_t(b) * NH + h) * T + t) * T;
  const float* d = dout + (std::size_t(b) * T + t) * C + h * hs;
  float dot_ad = 0;
  for (int t2 = 0; t2 <= t; ++t2) {
    const float* v = qkv + (std::size_t(b) * T + t2) * C3 + 2 * C + h * hs;
    float s = 0;
    for (int i = 0; i < hs; ++i) s += v[i] * d[i];
    dp[t2] = s;
    dot_ad += a[t2] * s;
  }
  for (int t2 = 0; t2 < T; ++t2) dp[t2] = t2 <= t ? a[t2] * (dp[t2] - dot_ad) * scale : 0.0f;
}

// One thread per (b, h, t, i): dq[t] = sum_t2 dpre[t,t2] k[t2]; dk[t] = sum_t' dpre[t',t] q[t'];
// dv[t] = sum_t' att[t',t] dout[t']. Every output element has one writer.
__global__ void attention_dqkv_k(float* dqkv, const float* dpre, const float* dout, const float* qkv, const float* att,
                                 int B, int T, int C, int NH) {
  int hs = C / NH;
  std::size_t idx = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= std::size_t(B) * NH * T * hs) return;
  int i = int(idx % hs), t = int((idx / hs) % T), h = int((idx / (std::size_t(hs) * T)) % NH),
      b = int(idx / (std::size_t(hs) * T * NH));
  int C3 = 3 * C;
  const float* P = dpre + (std::size_t(b) * NH + h) * T * T;
  const float* A = att + (std::size_t(b) * NH + h) * T * T;
  float dq = 0, dk = 0, dv = 0;
  for (int t2 = 0; t2 <= t; ++t2) dq += P[std::size_t(t) * T + t2] * qkv[(std::size_t(b) * T + t2) * C3 + C + h * hs + i];
  for (int t1 = t; t1 < T; ++t1) {
    dk += P[std::size_t(t1) * T + t] * qkv[(std::size_t(b) * T + t1) * C3 + h * hs + i];
    dv += A[std::size_t(t1) * T + t] * dout[(std::size_t(b) * T + t1) * C + h * hs + i];
  }
  float* row = dqkv + (std::size_t(b) * T + t) * C3 + h * hs + i;
  row[0] += dq;
  row[C] += dk;
  row[2 * C] += dv;
}

constexpr float kGeluScale = 0.7978845608028654f;

__global__ void gelu_forward_k(float* out, const float* inp, int N) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  float x = inp[i];
  out[i] = 0.5f * x * (1.0f + tanhf(kGeluScale * (x + 0.044715f * x * x * x)));
}

__global__ void gelu_backward_k(float* dinp, const float* inp, const float* dout, int N) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= N) return;
  float x = inp[i];
  float th = tanhf(kGeluScale * (x + 0.044715f * x * x * x));
  float local = 0.5f * (1.0f + th) + x * 0.5f * (1.0f - th * th) * kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
  dinp[i] += local * dout[i];
}

__global__ void residual_forward_k(float* out, const float* a, const float* b, int N) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) out[i] = a[i] + b[i];
}

__global__ void add_inplace_k(float* dst, const float* src, int N) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < N) dst[i] += src[i];
}

__global__ void softmax_ce_forward_k(float* probs, float* losses, const float* logits, const std::int32_t* targets, int N, int V) {
  int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  const float* z = logits + std::size_t(n) * V;
  float* p = probs + std::size_t(n) * V;
  float maxv = z[0];
  for (int i = 1; i < V; ++i) maxv = fmaxf(maxv, z[i]);
  float sum = 0;
  for (int i = 0; i < V; ++i) {
    p[i] = expf(z[i] - maxv);
    sum += p[i];
  }
  losses[n] = logf(sum) + maxv - z[targets[n]];
  float inv = 1.0f / sum;
  for (int i = 0; i < V; ++i) p[i] *= inv;
}

__global__ void softmax_ce_backward_k(float* dlogits, const float* probs, const std::int32_t* targets, float dloss, int N, int V) {
  std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= std::size_t(N) * V) return;
  int n = int(i / V), v = int(i % V);
  dlogits[i] += (probs[i] - (v == targets[n] ? 1.0f : 0.0f)) * dloss;
}

__global__ void sumsq_k(float* partial, const float* x, std::size_t n) {
  __shared__ float buf[kThreads];
  float s = 0;
  for (std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  buf[threadIdx.x] = s;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o /= 2) {
    if (int(threadIdx.x) < o) buf[threadIdx.x] += buf[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = buf[0];
}

__global__ void scale_k(float* x, float s, std::size_t n) {
  std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

__global__ void adamw_k(float* p, const float* g, float* m, float* v, std::size_t n, float b1, float b2, float eps,
                        float step_size, float bc2_sqrt, float decay) {
  std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float gi = g[i];
  float mi = m[i] = b1 * m[i] + (1.0f - b1) * gi;
  float vi = v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
  p[i] = p[i] * decay - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
}

}  // namespace

void encoder_forward(float* out, const std::int32_t* tok, const float* wte, const float* wpe, int B, int T, int C) {
  encoder_forward_k<<<blocks_for(std::size_t(B) * T * C), kThreads>>>(out, tok, wte, wpe, B, T, C);
  launched("encoder_forward");
}
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tok, int B, int T, int C) {
  encoder_backward_k<<<blocks_for(std::size_t(T) * C), kThreads>>>(dwte, dwpe, dout, tok, B, T, C);
  launched("encoder_backward");
}
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N, int C) {
  layernorm_forward_k<<<(N + 7) / 8, kThreads>>>(out, mean, rstd, inp, w, b, N, C);
  launched("layernorm_forward");
}
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C) {
  layernorm_backward_dinp_k<<<(N + 7) / 8, kThreads>>>(dinp, dout, inp, w, mean, rstd, N, C);
  layernorm_backward_dw_k<<<blocks_for(C), kThreads>>>(dw, db, dout, inp, mean, rstd, N, C);
  launched("layernorm_backward");
}
void matmul_forward(cublasHandle_t h, float* out, const float* inp, const float* w, const float* bias, int N, int IC, int OC) {
  // Row-major out[N,OC] = inp[N,IC] W[OC,IC]^T is column-major out^T = W^T(op T on W's storage) inp^T.
  const float one = 1, zero = 0;
  check(cublas().sgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, &one, w, IC, inp, IC, &zero, out, OC), "sgemm forward");
  if (bias) {
    add_bias_k<<<blocks_for(std::size_t(N) * OC), kThreads>>>(out, bias, N, OC);
    launched("add_bias");
  }
}
void matmul_backward(cublasHandle_t h, float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
                     const float* w, int N, int IC, int OC) {
  const float one = 1;
  check(cublas().sgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, &one, w, IC, dout, OC, &one, dinp, IC), "sgemm dinp");
  check(cublas().sgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, &one, inp, IC, dout, OC, &one, dw, IC), "sgemm dweight");
  if (dbias) {
    bias_grad_k<<<blocks_for(OC), kThreads>>>(dbias, dout, N, OC);
    launched("bias_grad");
  }
}
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
  attention_forward_k<<<blocks_for(std::size_t(B) * NH * T), kThreads>>>(out, att, qkv, B, T, C, NH);
  launched("attention_forward");
}
void attention_backward(float* dqkv, float* dpre, const float* dout, const float* qkv, const float* att, int B, int T,
                        int C, int NH) {
  attention_dpre_k<<<blocks_for(std::size_t(B) * NH * T), kThreads>>>(dpre, dout, qkv, att, B, T, C, NH);
  attention_dqkv_k<<<blocks_for(std::size_t(B) * T * C), kThreads>>>(dqkv, dpre, dout, qkv, att, B, T, C, NH);
  launched("attention_backward");
}
void gelu_forward(float* out, const float* inp, int N) {
  gelu_forward_k<<<blocks_for(N), kThreads>>>(out, inp, N);
  launched("gelu_forward");
}
void gelu_backward(float* dinp, const float* inp, const float* dout, int N) {
  gelu_backward_k<<<blocks_for(N), kThreads>>>(dinp, inp, dout, N);
  launched("gelu_backward");
}
void residual_forward(float* out, const float* a, const float* b, int N) {
  residual_forward_k<<<blocks_for(N), kThreads>>>(out, a, b, N);
  launched("residual_forward");
}
void add_inplace(float* dst, const float* src, int N) {
  add_inplace_k<<<blocks_for(N), kThreads>>>(dst, src, N);
  launched("add_inplace");
}
void softmax_crossentropy_forward(float* probs, float* losses, const float* logits, const std::int32_t* targets, int N, int V) {
  softmax_ce_forward_k<<<blocks_for(N), kThreads>>>(probs, losses, logits, targets, N, V);
  launched("softmax_crossentropy_forward");
}
void softmax_crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, float dloss, int N, int V) {
  softmax_ce_backward_k<<<blocks_for(std::size_t(N) * V), kThreads>>>(dlogits, probs, targets, dloss, N, V);
  launched("softmax_crossentropy_backward");
}
int sumsq_partials(float* partial, const float* x, std::size_t n, int max_blocks) {
  int blocks = std::min(max_blocks, std::max(1, blocks_for(n)));
  sumsq_k<<<blocks, kThreads>>>(partial, x, n);
  launched("sumsq");
  return blocks;
}
void scale_inplace(float* x, float s, std::size_t n) {
  scale_k<<<blocks_for(n), kThreads>>>(x, s, n);
  launched("scale");
}
void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float b1, float b2, float eps, float step_size,
           float bc2_sqrt, float decay) {
  adamw_k<<<blocks_for(n), kThreads>>>(p, g, m, v, n, b1, b2, eps, step_size, bc2_sqrt, decay);
  launched("adamw");
}

}  // namespace wsm::trainer::cuda
