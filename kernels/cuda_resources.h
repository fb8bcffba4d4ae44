#pragma once
// RAII owners for CUDA resources and error checks that turn a failed call into a wsm::Error naming
// it (CUDA builds only, included from .cu files): the merge backend's, and the trainer's through
// trainer/cuda_resources.h.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "kernels/cublas_loader.h"
#include "wsm/core/error.h"

namespace wsm::kernels::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("CUDA: ") + what + ": cuBLAS status " + std::to_string(int(s)));
}

// Move-only owner of a pointer released by Free (cudaFree, cudaFreeHost).
template <cudaError_t (*Free)(void*)>
class Memory {
 public:
  Memory() = default;
  Memory(void* p, std::size_t bytes) : p_(p), bytes_(bytes) {}
  ~Memory() { reset(); }
  Memory(Memory&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  Memory& operator=(Memory&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  void* get() const { return p_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  std::size_t bytes() const { return bytes_; }

 private:
  void reset() {
    if (p_) Free(p_);  // errors at teardown cannot be reported usefully
    p_ = nullptr;
  }
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};
using DeviceBuffer = Memory<cudaFree>;
using PinnedBuffer = Memory<cudaFreeHost>;

inline DeviceBuffer device_alloc(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
  return DeviceBuffer(p, bytes);
}
inline PinnedBuffer pinned_alloc(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMallocHost(&p, bytes ? bytes : 1), "cudaMallocHost");
  return PinnedBuffer(p, bytes);
}

class Stream {
 public:
  Stream() { check(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  cudaStream_t get() const { return s_; }
  void sync() const { check(cudaStreamSynchronize(s_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event() { check(cudaEventCreate(&e_), "cudaEventCreate"); }
  ~Event() {
    if (e_) cudaEventDestroy(e_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

class CublasHandle {
 public:
  CublasHandle() { check(cublas().create(&h_), "cublasCreate"); }
  ~CublasHandle() {
    if (h_) cublas().destroy(h_);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace wsm::kernels::cuda
