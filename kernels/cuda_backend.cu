// CUDA backend: host tensors are streamed through the GPU in chunks. Two slots, each with its own
// stream, pinned staging and device buffers, alternate: while the GPU copies in, merges and copies
// out one chunk, the CPU stages the next chunk's inputs into the other slot's pinned memory, so host
// copies, H2D, compute and D2H overlap. Device memory is bounded by CudaOptions::chunk_bytes per
// staged input chunk (times K inputs + M outputs, times 2 slots).
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "wsm/kernels/cuda_bench.h"
#include "kernels/cuda_kernels.cuh"
#include "kernels/cuda_support/cublas_loader.h"
#include "kernels/cuda_support/device_buffer.h"
#include "kernels/cuda_support/pinned_buffer.h"
#include "kernels/cuda_support/stream.h"
#include "wsm/kernels/merge.h"
#include "kernels/problem_check.h"

namespace wsm::kernels {
namespace cuda {
using namespace wsm::cuda;  // the support library: checks, buffers, streams, cuBLAS
namespace {

int launch_blocks(std::size_t work, int threads) {
  static const int sms = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      return 80;
    return n;
  }();
  const std::size_t want = (work + threads - 1) / threads;
  return int(std::clamp<std::size_t>(want, 1, std::size_t(sms) * 8));
}

template <class Acc>
void launch_fused(const DeviceJob<Acc>& job, cudaStream_t s) {
  constexpr int kThreads = 256;
  const std::size_t work = job.vector_ok ? (job.n + kVec - 1) / kVec : job.n;
  const int blocks = launch_blocks(work, kThreads);
  for (int m0 = 0; m0 < job.m; m0 += kMaxOutPerPass) {
    switch (std::min(job.m - m0, kMaxOutPerPass)) {
      case 1: fused_merge<Acc, 1><<<blocks, kThreads, 0, s>>>(job, m0); break;
      case 2: fused_merge<Acc, 2><<<blocks, kThreads, 0, s>>>(job, m0); break;
      case 3: fused_merge<Acc, 3><<<blocks, kThreads, 0, s>>>(job, m0); break;
      default: fused_merge<Acc, 4><<<blocks, kThreads, 0, s>>>(job, m0); break;
    }
    check(cudaGetLastError(), "fused merge kernel launch");
  }
}

template <class Acc>
constexpr cudaDataType_t cublas_type() {
  return sizeof(Acc) == 8 ? CUDA_R_64F : CUDA_R_32F;
}
template <class Acc>
constexpr cublasComputeType_t cublas_compute() {
  // PEDANTIC keeps f32 products in f32 (no TF32 even when the handle's math mode would allow it).
  return sizeof(Acc) == 8 ? CUBLAS_COMPUTE_64F_PEDANTIC : CUBLAS_COMPUTE_32F_PEDANTIC;
}

// [n x K] widened inputs times [K x M] weights (the row-major M x K table read column-major) -> [n x M].
template <class Acc>
void launch_cublas(const DeviceJob<Acc>& job, cublasHandle_t h, cudaStream_t s, Acc* a, Acc* c, const Acc* w) {
  constexpr int kThreads = 256;
  widen_columns<Acc><<<launch_blocks(job.n * job.k, kThreads), kThreads, 0, s>>>(job, a);
  check(cudaGetLastError(), "widen kernel launch");
  check(cublas().set_stream(h, s), "cublasSetStream");
  const Acc one = 1, zero = 0;
  check(cublas().gemm_ex(h, CUBLAS_OP_N, CUBLAS_OP_N, int(job.n), job.m, job.k, &one, a, cublas_type<Acc>(), int(job.n), w,
                     cublas_type<Acc>(), job.k, &zero, c, cublas_type<Acc>(), int(job.n), cublas_compute<Acc>(),
                     CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  round_columns<Acc><<<launch_blocks(job.n * job.m, kThreads), kThreads, 0, s>>>(job, c);
  check(cudaGetLastError(), "round kernel launch");
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Device-side tables for one slot: pointers, dtypes and weights, uploaded once per merge call.
template <class Acc>
struct JobTables {
  DeviceBuffer<const void*> in_ptrs;
  DeviceBuffer<void*> out_ptrs;
  DeviceBuffer<DType> in_types, out_types;
  DeviceBuffer<Acc> weights;

  DeviceJob<Acc> upload(const std::vector<const void*>& in, const std::vector<DType>& in_t,
                        const std::vector<void*>& out, const std::vector<DType>& out_t, const std::vector<Acc>& w,
                        cudaStream_t s) {
    auto put = [&]<class T>(DeviceBuffer<T>& buf, const std::vector<T>& src) {
      buf = DeviceBuffer<T>::uninitialized(src.size());
      check(cudaMemcpyAsync(buf.get(), src.data(), buf.bytes(), cudaMemcpyHostToDevice, s), "upload merge tables");
    };
    put(in_ptrs, in);
    put(in_types, in_t);
    put(out_ptrs, out);
    put(out_types, out_t);
    put(weights, w);
    check(cudaStreamSynchronize(s), "upload merge tables");  // the host vectors may go away after this
    DeviceJob<Acc> job;
    job.in = in_ptrs.get();
    job.in_t = in_types.get();
    job.out = out_ptrs.get();
    job.out_t = out_types.get();
    job.w = weights.get();
    job.k = int(in.size());
    job.m = int(out.size());
    job.vector_ok = std::all_of(in.begin(), in.end(), aligned16) &&
                    std::all_of(out.begin(), out.end(), [](void* p) { return aligned16(p); });
    return job;
  }
};

class CudaBackend final : public MergeBackend {
 public:
  explicit CudaBackend(const CudaOptions& o) : options_(o) {
    if (!cuda_available()) throw Error("CUDA merge backend requested, but no CUDA device is available");
    if (options_.use_cublas) cublas_.emplace();
  }
  std::string name() const override { return options_.use_cublas ? "cublas" : "cuda"; }

  void merge(const MergeProblem& p) override {
    check_problem(p, name());
    if (p.count == 0) return;
    if (p.accumulate_f64)
      run<double>(p);
    else
      run<float>(p);
  }

 private:
  template <class Acc>
  struct Slot {
    Stream stream;
    PinnedBuffer<std::byte> pin_in, pin_out;
    DeviceBuffer<std::byte> dev_in, dev_out;
    DeviceBuffer<Acc> mat_a, mat_c;
    JobTables<Acc> tables;
    DeviceJob<Acc> job;
    std::size_t begin = 0, n = 0;  // the chunk in flight
    bool busy = false;
  };

  template <class Acc>
  void run(const MergeProblem& p) {
    const std::size_t k = p.inputs.size(), m = p.outputs.size();
    std::size_t in_size = 0, in_total = 0, out_total = 0;
    std::vector<std::size_t> in_off(k), out_off(m);
    for (const auto& in : p.inputs) in_size = std::max(in_size, dtype_size(in.dtype));
    // Chunk elements: a multiple of the vector width, so every staged buffer starts 16-byte aligned.
    std::size_t chunk = std::max<std::size_t>(kVec, options_.chunk_bytes / in_size / kVec * kVec);
    chunk = std::min(chunk, (p.count + kVec - 1) / kVec * kVec);
    for (std::size_t j = 0; j < k; ++j) {
      in_off[j] = in_total;
      in_total += chunk * dtype_size(p.inputs[j].dtype);
    }
    for (std::size_t o = 0; o < m; ++o) {
      out_off[o] = out_total;
      out_total += chunk * dtype_size(p.outputs[o].dtype);
    }
    std::vector<Acc> w(p.weights.begin(), p.weights.end());
    std::vector<DType> in_t(k), out_t(m);
    for (std::size_t j = 0; j < k; ++j) in_t[j] = p.inputs[j].dtype;
    for (std::size_t o = 0; o < m; ++o) out_t[o] = p.outputs[o].dtype;

    Slot<Acc> slots[2];
    for (auto& s : slots) {
      s.pin_in = PinnedBuffer<std::byte>(in_total);
      s.pin_out = PinnedBuffer<std::byte>(out_total);
      s.dev_in = DeviceBuffer<std::byte>::uninitialized(in_total);
      s.dev_out = DeviceBuffer<std::byte>::uninitialized(out_total);
      if (options_.use_cublas) {
        s.mat_a = DeviceBuffer<Acc>::uninitialized(chunk * k);
        s.mat_c = DeviceBuffer<Acc>::uninitialized(chunk * m);
      }
      std::vector<const void*> din(k);
      std::vector<void*> dout(m);
      for (std::size_t j = 0; j < k; ++j) din[j] = s.dev_in.get() + in_off[j];
      for (std::size_t o = 0; o < m; ++o) dout[o] = s.dev_out.get() + out_off[o];
      s.job = s.tables.upload(din, in_t, dout, out_t, w, s.stream.get());
    }

    // Copies a finished slot's outputs from pinned memory to the caller's buffers.
    auto drain = [&](Slot<Acc>& s) {
      if (!s.busy) return;
      s.stream.sync();
      for (std::size_t o = 0; o < m; ++o) {
        const std::size_t es = dtype_size(out_t[o]);
        std::memcpy(static_cast<std::byte*>(p.outputs[o].data) + s.begin * es, s.pin_out.get() + out_off[o],
                    s.n * es);
      }
      s.busy = false;
    };

    std::size_t index = 0;
    for (std::size_t begin = 0; begin < p.count; begin += chunk, ++index) {
      Slot<Acc>& s = slots[index % 2];
      drain(s);
      s.begin = begin;
      s.n = std::min(chunk, p.count - begin);
      s.job.n = s.n;
      const cudaStream_t st = s.stream.get();
      for (std::size_t j = 0; j < k; ++j) {
        const std::size_t es = dtype_size(in_t[j]);
        std::byte* pin = s.pin_in.get() + in_off[j];
        std::memcpy(pin, static_cast<const std::byte*>(p.inputs[j].data) + begin * es, s.n * es);
        check(cudaMemcpyAsync(s.dev_in.get() + in_off[j], pin, s.n * es, cudaMemcpyHostToDevice, st),
              "copy input chunk to device");
      }
      if (options_.use_cublas)
        launch_cublas<Acc>(s.job, cublas_->get(), st, s.mat_a.get(), s.mat_c.get(), s.job.w);
      else
        launch_fused<Acc>(s.job, st);
      for (std::size_t o = 0; o < m; ++o) {
        const std::size_t es = dtype_size(out_t[o]);
        check(cudaMemcpyAsync(s.pin_out.get() + out_off[o], s.dev_out.get() + out_off[o], s.n * es,
                              cudaMemcpyDeviceToHost, st),
              "copy output chunk to host");
      }
      s.busy = true;
    }
    drain(slots[index % 2]);
    drain(slots[(index + 1) % 2]);
  }

  CudaOptions options_;
  std::optional<CublasHandle> cublas_;
};

}  // namespace
}  // namespace cuda

bool cuda_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return false;
  }
  return n > 0;
}

std::unique_ptr<MergeBackend> make_cuda_backend(const CudaOptions& options) {
  return std::make_unique<cuda::CudaBackend>(options);
}

CudaKernelTimes cuda_kernel_bench(const CudaKernelBenchSpec& spec) {
  using namespace cuda;
  if (!cuda_available()) throw Error("CUDA kernel benchmark: no CUDA device is available");
  if (spec.inputs < 1 || spec.outputs < 1 || spec.count == 0 || spec.repeats < 1)
    throw Error("CUDA kernel benchmark: inputs, outputs, count and repeats must be positive");
  CudaKernelTimes t;
  cudaDeviceProp prop{};
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  t.device = prop.name;

  const std::size_t k = spec.inputs, m = spec.outputs, n = spec.count;
  const std::size_t in_bytes = n * dtype_size(spec.in_dtype), out_bytes = n * dtype_size(spec.out_dtype);
  t.bytes = double(k * in_bytes + m * out_bytes);
  std::vector<DeviceBuffer<std::byte>> ins, outs;
  std::vector<const void*> in_p;
  std::vector<void*> out_p;
  for (std::size_t j = 0; j < k; ++j) {
    ins.push_back(DeviceBuffer<std::byte>::uninitialized(in_bytes));
    check(cudaMemset(ins.back().get(), 0x3c, in_bytes), "cudaMemset");  // finite values in every dtype
    in_p.push_back(ins.back().get());
  }
  for (std::size_t o = 0; o < m; ++o) {
    outs.push_back(DeviceBuffer<std::byte>::uninitialized(out_bytes));
    out_p.push_back(outs.back().get());
  }
  std::vector<float> w(m * k, 1.0f / float(k));
  Stream stream;
  JobTables<float> tables;
  DeviceJob<float> job = tables.upload(in_p, std::vector<DType>(k, spec.in_dtype), out_p,
                                       std::vector<DType>(m, spec.out_dtype), w, stream.get());
  job.n = n;
  Event start, stop;
  auto time = [&](auto&& body) {
    body();  // warm-up
    check(cudaEventRecord(start.get(), stream.get()), "cudaEventRecord");
    for (int r = 0; r < spec.repeats; ++r) body();
    check(cudaEventRecord(stop.get(), stream.get()), "cudaEventRecord");
    check(cudaEventSynchronize(stop.get()), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start.get(), stop.get()), "cudaEventElapsedTime");
    return double(ms) / 1e3 / spec.repeats;
  };
  t.fused_s = time([&] { launch_fused<float>(job, stream.get()); });
  {
    CublasHandle h;
    auto a = DeviceBuffer<float>::uninitialized(n * k), c = DeviceBuffer<float>::uninitialized(n * m);
    t.cublas_s = time([&] { launch_cublas<float>(job, h.get(), stream.get(), a.get(), c.get(), job.w); });
  }
  // A copy of B bytes reads B and writes B: copying half the merge's traffic moves the same bytes.
  const std::size_t half = std::size_t(t.bytes / 2);
  auto src = DeviceBuffer<std::byte>::uninitialized(half), dst = DeviceBuffer<std::byte>::uninitialized(half);
  t.memcpy_d2d_s = time([&] {
    check(cudaMemcpyAsync(dst.get(), src.get(), half, cudaMemcpyDeviceToDevice, stream.get()), "cudaMemcpy D2D");
  });
  return t;
}

}  // namespace wsm::kernels
