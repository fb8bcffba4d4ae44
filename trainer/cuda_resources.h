#pragma once
// RAII for the CUDA trainer: typed device buffers, plus kernels/'s error checks and cuBLAS handle.
// Only included from .cu files.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda_resources.h"
#include "wsm/core/error.h"

namespace wsm::trainer::cuda {

// The error checks, cuBLAS (loaded on first use) and its handle are the merge backend's (one set of CUDA RAII in wsm).
using kernels::cuda::check;
using kernels::cuda::cublas;
using kernels::cuda::CublasHandle;

struct CudaFree {
  void operator()(void* p) const { cudaFree(p); }
};

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) { resize(n); }
  void resize(std::size_t n) {
    if (n == n_) return;
    void* p = nullptr;
    if (n) check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    ptr_.reset(p);
    n_ = n;
    zero();
  }
  void zero() {
    if (n_) check(cudaMemset(ptr_.get(), 0, n_ * sizeof(T)), "cudaMemset");
  }
  void upload(const T* src, std::size_t n) {
    resize(n);
    if (n) check(cudaMemcpy(ptr_.get(), src, n * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }
  void download(T* dst) const {
    if (n_) check(cudaMemcpy(dst, ptr_.get(), n_ * sizeof(T), cudaMemcpyDeviceToHost), "download");
  }
  std::vector<T> to_host() const {
    std::vector<T> v(n_);
    download(v.data());
    return v;
  }
  T* get() const { return static_cast<T*>(ptr_.get()); }
  std::size_t size() const { return n_; }

 private:
  std::unique_ptr<void, CudaFree> ptr_;
  std::size_t n_ = 0;
};

}  // namespace wsm::trainer::cuda
