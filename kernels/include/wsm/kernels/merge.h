#pragma once
// The core computation of wsm: out_m = sum_j W[m][j] * x_j for M weight vectors over K = k+1
// inputs, all M outputs from one pass over the inputs. Memory-bound; see docs/design.md.
//
// Semantics every backend shares (and tests/ checks against a double-precision loop):
// - inputs f32/f16/bf16/f64, mixed allowed; accumulation in f32 (f64 when asked);
// - outputs f32/f16/bf16/f64, rounded to nearest even once at the end;
// - a fixed summation order (j = 0..K-1, one fused multiply-add chain per element), so results are
//   bit-identical run to run and between the CPU backend and the host build of the CUDA per-element code.
#include <array>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "wsm/core/dtype.h"

namespace wsm::kernels {

struct MergeInput {
  const void* data = nullptr;  // host memory
  DType dtype = DType::f32;
};
struct MergeOutput {
  void* data = nullptr;  // host memory
  DType dtype = DType::f32;
};

struct MergeProblem {
  std::span<const MergeInput> inputs;    // K inputs, oldest first
  std::span<const double> weights;       // M x K, row-major: weights[m * K + j]
  std::span<const MergeOutput> outputs;  // M outputs
  std::size_t count = 0;                 // elements per tensor
  bool accumulate_f64 = false;
  int threads = 0;                       // CPU: 0 = an OpenMP team as large as allowed; 1 = the calling thread only
};

class MergeBackend {
 public:
  virtual ~MergeBackend() = default;
  virtual std::string name() const = 0;   // "cpu", "cuda", "cublas"
  virtual void merge(const MergeProblem& problem) = 0;  // throws wsm::Error on bad arguments
  // How many merge() calls may usefully run at once from different threads, each with threads = 1
  // on its own slice of the data: the merge engine then runs that many compute threads instead of
  // a thread team per call. 1 for backends that serialise on one device.
  virtual int concurrent_calls() const { return 1; }
};

std::unique_ptr<MergeBackend> make_cpu_backend();

struct CudaOptions {
  bool use_cublas = false;             // GemmEx path instead of the fused kernel
  std::size_t chunk_bytes = 64 << 20;  // device memory bound per staged input chunk
};
// True when the CUDA backend was compiled in and a device is present.
bool cuda_available();
// Throws wsm::Error with a clear message when CUDA is not compiled in or no device is present.
std::unique_ptr<MergeBackend> make_cuda_backend(const CudaOptions& options = {});

// Which backend merges: the CPU, the fused CUDA kernel, cuBLAS GemmEx, or CUDA when a device is
// there and the CPU otherwise.
enum class BackendKind { cpu, cuda, cublas, automatic };
// The names, once: parse_backend_kind, backend_kind_name and every --backend option read this table.
inline constexpr std::array<std::pair<std::string_view, BackendKind>, 4> kBackendKindNames{
    {{"cpu", BackendKind::cpu},
     {"cuda", BackendKind::cuda},
     {"cublas", BackendKind::cublas},
     {"auto", BackendKind::automatic}}};
// "cpu", "cuda", "cublas" or "auto"; throws wsm::Error listing the choices.
BackendKind parse_backend_kind(std::string_view name);
std::string_view backend_kind_name(BackendKind kind);
// True when `kind` merges on a GPU (automatic: when a device is present).
bool backend_uses_gpu(BackendKind kind);
std::unique_ptr<MergeBackend> make_backend(BackendKind kind);

}  // namespace wsm::kernels
