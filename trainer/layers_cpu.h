#pragma once
// CPU forward/backward of every GPT layer, llm.c style: plain arrays, activations [B, T, C] in row
// order, backward functions ACCUMULATE (+=) into their gradient outputs. Templated on the float
// type: float is the training path, double is the reference the finite-difference tests check.
// Matmuls go to sgemm_cpu.h (oneDNN or the BLAS) and cblas_dgemm; work is spread over the trainer's
// thread pool (thread_pool.h) in fixed blocks, so results do not depend on the thread count.
#include <cstdint>

namespace wsm::trainer::cpu {

// out[b,t,:] = wte[tok[b,t], :] + wpe[t, :]
template <class F>
void encoder_forward(F* out, const std::int32_t* tok, const F* wte, const F* wpe, int B, int T, int C);
template <class F>
void encoder_backward(F* dwte, F* dwpe, const F* dout, const std::int32_t* tok, int B, int T, int C);

// Per row of C: (x - mean) * rstd * w + b, eps = 1e-5. mean/rstd [N] are saved for backward.
template <class F>
void layernorm_forward(F* out, F* mean, F* rstd, const F* inp, const F* w, const F* b, int N, int C);
template <class F>
void layernorm_backward(F* dinp, F* dw, F* db, const F* dout, const F* inp, const F* w, const F* mean,
                        const F* rstd, int N, int C);

// out[N, OC] = inp[N, IC] W[OC, IC]^T + bias[OC] (bias may be null).
template <class F>
void matmul_forward(F* out, const F* inp, const F* w, const F* bias, int N, int IC, int OC);
template <class F>
void matmul_backward(F* dinp, F* dw, F* dbias, const F* dout, const F* inp, const F* w, int N, int IC, int OC);

// Causal multi-head self-attention. qkv [B, T, 3C] holds q, k, v side by side; att [B, NH, T, T]
// keeps the softmax probabilities for backward; out [B, T, C].
template <class F>
void attention_forward(F* out, F* att, const F* qkv, int B, int T, int C, int NH);
template <class F>
void attention_backward(F* dqkv, const F* dout, const F* qkv, const F* att, int B, int T, int C, int NH);

// GELU, tanh approximation (GPT-2's).
template <class F>
void gelu_forward(F* out, const F* inp, int N);
template <class F>
void gelu_backward(F* dinp, const F* inp, const F* dout, int N);

template <class F>
void residual_forward(F* out, const F* a, const F* b, int N);
template <class F>
void residual_backward(F* da, F* db, const F* dout, int N);

// Softmax over V per row, then per-position loss -log p[target]. probs may alias nothing.
template <class F>
void softmax_crossentropy_forward(F* probs, F* losses, const F* logits, const std::int32_t* targets, int N, int V);
// dlogits = (probs - onehot(target)) * dloss, with the same dloss for every position (the mean).
template <class F>
void softmax_crossentropy_backward(F* dlogits, const F* probs, const std::int32_t* targets, F dloss, int N, int V);

// Threads for the layers (and AdamW): the pool's size; OpenMP and OpenBLAS are set to one thread.
void set_num_threads(int n);

}  // namespace wsm::trainer::cpu
