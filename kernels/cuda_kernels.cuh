#pragma once
// Device kernels of the CUDA merge backend (internal to kernels/). The arithmetic is elem::'s, the
// same chain as the CPU backend, so the fused kernel is bit-identical to it; the cuBLAS path is not
// (GemmEx picks its own summation order) and is tested within a tolerance.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/merge_element.h"

namespace wsm::kernels::cuda {

// Small per-launch tables live in device memory so K and M are not limited by kernel-parameter size.
template <class Acc>
struct DeviceJob {
  const void* const* in = nullptr;  // K device pointers
  const DType* in_t = nullptr;      // K
  void* const* out = nullptr;       // M device pointers
  const DType* out_t = nullptr;     // M
  const Acc* w = nullptr;           // M x K, row-major
  int k = 0;
  int m = 0;
  std::size_t n = 0;
  bool vector_ok = false;  // every pointer 16-byte aligned: the 8-element vector path may be used
};

constexpr int kVec = 8;           // elements per thread per step: one 16-byte load of 16-bit data
constexpr int kMaxOutPerPass = 4;  // outputs accumulated in registers per pass over the inputs

template <class Acc>
__device__ __forceinline__ void load8(const void* p, DType t, std::size_t g, Acc (&x)[kVec]) {
  switch (t) {
    case DType::f16:
    case DType::bf16: {
      const uint4 v = static_cast<const uint4*>(p)[g];
      std::uint16_t h[kVec];
      std::memcpy(h, &v, sizeof v);
      for (int i = 0; i < kVec; ++i)
        x[i] = static_cast<Acc>(t == DType::f16 ? elem::f16_to_f32(h[i]) : elem::bf16_to_f32(h[i]));
      break;
    }
    case DType::f64: {
      const double2* q = static_cast<const double2*>(p) + g * 4;
      for (int r = 0; r < 4; ++r) {
        const double2 v = q[r];
        x[2 * r] = static_cast<Acc>(v.x);
        x[2 * r + 1] = static_cast<Acc>(v.y);
      }
      break;
    }
    default: {
      const float4* q = static_cast<const float4*>(p) + g * 2;
      const float4 a = q[0], b = q[1];
      x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
      break;
    }
  }
}

template <class Acc>
__device__ __forceinline__ void store8(void* p, DType t, std::size_t g, const Acc (&a)[kVec]) {
  switch (t) {
    case DType::f16:
    case DType::bf16: {
      std::uint16_t h[kVec];
      for (int i = 0; i < kVec; ++i) elem::store(h, t, i, a[i]);
      uint4 v;
      std::memcpy(&v, h, sizeof v);
      static_cast<uint4*>(p)[g] = v;
      break;
    }
    case DType::f64: {
      double2* q = static_cast<double2*>(p) + g * 4;
      for (int r = 0; r < 4; ++r) q[r] = make_double2(double(a[2 * r]), double(a[2 * r + 1]));
      break;
    }
    default: {
      float f[kVec];
      for (int i = 0; i < kVec; ++i) elem::store(f, DType::f32, i, a[i]);
      float4* q = static_cast<float4*>(p) + g * 2;
      q[0] = make_float4(f[0], f[1], f[2], f[3]);
      q[1] = make_float4(f[4], f[5], f[6], f[7]);
      break;
    }
  }
}

// Outputs m0 .. m0+MB-1 from one pass over the K inputs. Vector groups of 8 elements first
// (grid-stride), then the tail (and everything, when a pointer is misaligned) one element per thread.
template <class Acc, int MB>
__global__ void fused_merge(DeviceJob<Acc> job, int m0) {
  const std::size_t tid = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::size_t stride = std::size_t(gridDim.x) * blockDim.x;
  const std::size_t groups = job.vector_ok ? job.n / kVec : 0;
  for (std::size_t g = tid; g < groups; g += stride) {
    Acc acc[MB][kVec];
    for (int o = 0; o < MB; ++o)
      for (int i = 0; i < kVec; ++i) acc[o][i] = Acc(0);
    for (int j = 0; j < job.k; ++j) {
      Acc x[kVec];
      load8<Acc>(job.in[j], job.in_t[j], g, x);
      for (int o = 0; o < MB; ++o) {
        const Acc wj = job.w[(m0 + o) * job.k + j];
        for (int i = 0; i < kVec; ++i) acc[o][i] = elem::fma_acc(wj, x[i], acc[o][i]);
      }
    }
    for (int o = 0; o < MB; ++o) store8<Acc>(job.out[m0 + o], job.out_t[m0 + o], g, acc[o]);
  }
  for (std::size_t i = groups * kVec + tid; i < job.n; i += stride) {
    for (int o = 0; o < MB; ++o) {
      const Acc v = elem::merge_one<Acc>(job.in, job.in_t, job.w + (m0 + o) * job.k, job.k, i);
      elem::store(job.out[m0 + o], job.out_t[m0 + o], i, v);
    }
  }
}

// cuBLAS path, step 1: widen the K staged inputs into a column-major [n x K] matrix of Acc.
template <class Acc>
__global__ void widen_columns(DeviceJob<Acc> job, Acc* a) {
  const std::size_t total = job.n * std::size_t(job.k);
  for (std::size_t e = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t j = e / job.n, i = e % job.n;
    a[e] = elem::load<Acc>(job.in[j], job.in_t[j], i);
  }
}

// cuBLAS path, step 3: round the column-major [n x M] product into the M outputs.
template <class Acc>
__global__ void round_columns(DeviceJob<Acc> job, const Acc* c) {
  const std::size_t total = job.n * std::size_t(job.m);
  for (std::size_t e = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += std::size_t(gridDim.x) * blockDim.x) {
    const std::size_t o = e / job.n, i = e % job.n;
    elem::store(job.out[o], job.out_t[o], i, c[e]);
  }
}

}  // namespace wsm::kernels::cuda
