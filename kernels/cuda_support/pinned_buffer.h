#pragma once
// PinnedBuffer<T>: page-locked host memory (cudaMallocHost), n elements, contents undefined; what
// asynchronous copies stage through.
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>

#include "kernels/cuda_support/error_check.h"

namespace wsm::cuda {

template <class T>
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(std::size_t n) {
    void* p = nullptr;
    check(cudaMallocHost(&p, n ? n * sizeof(T) : 1), "cudaMallocHost");
    ptr_.reset(p);
    n_ = n;
  }
  T* get() const { return static_cast<T*>(ptr_.get()); }
  std::size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(void* p) const { cudaFreeHost(p); }
  };
  std::unique_ptr<void, Free> ptr_;
  std::size_t n_ = 0;
};

}  // namespace wsm::cuda
