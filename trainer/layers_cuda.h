#pragma once
// CUDA forward/backward of every GPT layer, mirroring layers_cpu.h (same shapes, backward functions
// accumulate). Matmuls use cuBLAS; the rest are kernels in layers_cuda.cu. All pointers are device
// pointers; launches go to the default stream.
#include <cublas_v2.h>

#include <cstdint>

#include "kernels/cuda_support/error_check.h"

namespace wsm::trainer::cuda {

// Checks, buffers and cuBLAS come from the CUDA support library (kernels/cuda_support/), shared with
// the merge backend.
using namespace wsm::cuda;

void encoder_forward(float* out, const std::int32_t* tok, const float* wte, const float* wpe, int B, int T, int C);
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tok, int B, int T, int C);
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N, int C);
void layernorm_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w,
                        const float* mean, const float* rstd, int N, int C);
void matmul_forward(cublasHandle_t h, float* out, const float* inp, const float* w, const float* bias, int N, int IC, int OC);
void matmul_backward(cublasHandle_t h, float* dinp, float* dw, float* dbias, const float* dout, const float* inp,
                     const float* w, int N, int IC, int OC);
// dpre is scratch of att's size [B, NH, T, T].
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
void attention_backward(float* dqkv, float* dpre, const float* dout, const float* qkv, const float* att, int B, int T,
                        int C, int NH);
void gelu_forward(float* out, const float* inp, int N);
void gelu_backward(float* dinp, const float* inp, const float* dout, int N);
void residual_forward(float* out, const float* a, const float* b, int N);
void softmax_crossentropy_forward(float* probs, float* losses, const float* logits, const std::int32_t* targets, int N, int V);
void softmax_crossentropy_backward(float* dlogits, const float* probs, const std::int32_t* targets, float dloss, int N, int V);
void add_inplace(float* dst, const float* src, int N);
// Sum of squares into partial[blocks] (host finishes the sum in double); returns the block count.
int sumsq_partials(float* partial, const float* x, std::size_t n, int max_blocks);
void scale_inplace(float* x, float s, std::size_t n);
// One torch-style AdamW update of n elements; decay is 1 - lr*wd for matrices, 1 otherwise.
void adamw(float* p, const float* g, float* m, float* v, std::size_t n, float b1, float b2, float eps, float step_size,
           float bc2_sqrt, float decay);

}  // namespace wsm::trainer::cuda
