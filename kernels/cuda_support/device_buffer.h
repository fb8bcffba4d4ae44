#pragma once
// DeviceBuffer<T>: the one owner of device memory in wsm, n elements of T (std::byte for raw staging).
// Sized by resize (zeroed: the trainer's activations and gradients rely on it) or by uninitialized
// (for buffers the next copy overwrites: the merge backend's staging, which must not pay a memset).
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "kernels/cuda_support/error_check.h"

namespace wsm::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t n) { resize(n); }

  // n elements, contents undefined. Allocates even for n == 0, so get() is never null.
  static DeviceBuffer uninitialized(std::size_t n) {
    DeviceBuffer b;
    b.allocate(n);
    return b;
  }
  // n zeroed elements (no-op when the size is already n; n == 0 frees).
  void resize(std::size_t n) {
    if (n == n_) return;
    if (n) allocate(n);
    else ptr_.reset();
    n_ = n;
    zero();
  }
  void zero() {
    if (n_) check(cudaMemset(ptr_.get(), 0, bytes()), "cudaMemset");
  }
  void upload(const T* src, std::size_t n) {
    resize(n);
    if (n) check(cudaMemcpy(ptr_.get(), src, bytes(), cudaMemcpyHostToDevice), "upload");
  }
  void download(T* dst) const {
    if (n_) check(cudaMemcpy(dst, ptr_.get(), bytes(), cudaMemcpyDeviceToHost), "download");
  }
  std::vector<T> to_host() const {
    std::vector<T> v(n_);
    download(v.data());
    return v;
  }
  T* get() const { return static_cast<T*>(ptr_.get()); }
  std::size_t size() const { return n_; }
  std::size_t bytes() const { return n_ * sizeof(T); }

 private:
  struct Free {
    void operator()(void* p) const { cudaFree(p); }  // errors at teardown cannot be reported usefully
  };
  void allocate(std::size_t n) {
    void* p = nullptr;
    check(cudaMalloc(&p, n ? n * sizeof(T) : 1), "cudaMalloc");
    ptr_.reset(p);
    n_ = n;
  }
  std::unique_ptr<void, Free> ptr_;
  std::size_t n_ = 0;
};

}  // namespace wsm::cuda
