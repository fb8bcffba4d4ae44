// CPU backend: the tensor is cut into blocks of kBlock elements; OpenMP spreads blocks over threads.
// Per block, each input is widened into a stack-sized scratch row, then FMA'd into M accumulator rows,
// so the inner loops are plain contiguous loops GCC vectorises. Every element sees the same operation
// chain as elem::merge_one whatever the thread count or block, so results are bit-identical.
//
// The hot loop is compiled twice: for AVX2+FMA+F16C (picked at run time) and for baseline x86-64,
// where fmaf is the (slow but exact) libm call, so semantics never depend on the machine.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/merge.h"
#include "kernels/merge_element.h"
#include "kernels/problem_check.h"
#include "protocol/error.h"

namespace wsm::kernels {
namespace {

constexpr std::size_t kBlock = 2048;

template <class Acc>
struct Job {
  std::vector<const void*> in;
  std::vector<DType> in_t;
  std::vector<void*> out;
  std::vector<DType> out_t;
  std::vector<Acc> w;  // M x K
  std::size_t k = 0, m = 0;
};

#define WSM_ALWAYS_INLINE inline __attribute__((always_inline))

template <class Acc>
WSM_ALWAYS_INLINE void widen(const void* p, DType t, std::size_t begin, std::size_t n, Acc* __restrict x) {
  switch (t) {
    case DType::f16: {
      const auto* s = static_cast<const std::uint16_t*>(p) + begin;
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<Acc>(elem::f16_to_f32(s[i]));
      break;
    }
    case DType::bf16: {
      const auto* s = static_cast<const std::uint16_t*>(p) + begin;
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<Acc>(elem::bf16_to_f32(s[i]));
      break;
    }
    case DType::f64: {
      const auto* s = static_cast<const double*>(p) + begin;
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<Acc>(s[i]);
      break;
    }
    default: {
      const auto* s = static_cast<const float*>(p) + begin;
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<Acc>(s[i]);
      break;
    }
  }
}

template <class Acc>
WSM_ALWAYS_INLINE void narrow(const Acc* __restrict a, void* p, DType t, std::size_t begin, std::size_t n) {
  switch (t) {
    case DType::f32: {
      auto* d = static_cast<float*>(p) + begin;
      for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<float>(a[i]);
      break;
    }
    case DType::f64: {
      auto* d = static_cast<double*>(p) + begin;
      for (std::size_t i = 0; i < n; ++i) d[i] = static_cast<double>(a[i]);
      break;
    }
    default:
      for (std::size_t i = 0; i < n; ++i) elem::store(p, t, begin + i, a[i]);
      break;
  }
}

// One block: scratch holds kBlock values of x followed by M rows of kBlock accumulators.
template <class Acc>
WSM_ALWAYS_INLINE void block_body(const Job<Acc>& job, std::size_t begin, std::size_t n, Acc* __restrict scratch) {
  Acc* __restrict x = scratch;
  Acc* __restrict acc = scratch + kBlock;
  std::fill(acc, acc + job.m * kBlock, Acc(0));
  for (std::size_t j = 0; j < job.k; ++j) {
    widen<Acc>(job.in[j], job.in_t[j], begin, n, x);
    for (std::size_t o = 0; o < job.m; ++o) {
      const Acc wj = job.w[o * job.k + j];
      Acc* __restrict row = acc + o * kBlock;
      for (std::size_t i = 0; i < n; ++i) row[i] = elem::fma_acc(wj, x[i], row[i]);
    }
  }
  for (std::size_t o = 0; o < job.m; ++o) narrow<Acc>(acc + o * kBlock, job.out[o], job.out_t[o], begin, n);
}

template <class Acc>
__attribute__((target("avx2,fma,f16c"), noinline)) void block_avx2(const Job<Acc>& job, std::size_t begin,
                                                                  std::size_t n, Acc* scratch) {
  block_body<Acc>(job, begin, n, scratch);
}
template <class Acc>
__attribute__((noinline)) void block_generic(const Job<Acc>& job, std::size_t begin, std::size_t n, Acc* scratch) {
  block_body<Acc>(job, begin, n, scratch);
}

bool have_avx2_fma() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return yes;
}

template <class Acc>
void run(const MergeProblem& p) {
  Job<Acc> job;
  job.k = p.inputs.size();
  job.m = p.outputs.size();
  for (const auto& in : p.inputs) {
    job.in.push_back(in.data);
    job.in_t.push_back(in.dtype);
  }
  for (const auto& out : p.outputs) {
    job.out.push_back(out.data);
    job.out_t.push_back(out.dtype);
  }
  for (double w : p.weights) job.w.push_back(static_cast<Acc>(w));

  const std::size_t blocks = (p.count + kBlock - 1) / kBlock;
  const bool fast = have_avx2_fma();
  // Small problems are not worth waking the thread team.
  const int threads = blocks < 4 ? 1 : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    std::vector<Acc> scratch((job.m + 1) * kBlock);
#pragma omp for schedule(static)
    for (std::size_t b = 0; b < blocks; ++b) {
      const std::size_t begin = b * kBlock;
      const std::size_t n = std::min(kBlock, p.count - begin);
      if (fast)
        block_avx2<Acc>(job, begin, n, scratch.data());
      else
        block_generic<Acc>(job, begin, n, scratch.data());
    }
  }
}

class CpuBackend final : public MergeBackend {
 public:
  std::string name() const override { return "cpu"; }
  void merge(const MergeProblem& problem) override {
    check_problem(problem, "cpu");
    if (problem.count == 0) return;
    if (problem.accumulate_f64)
      run<double>(problem);
    else
      run<float>(problem);
  }
};

}  // namespace

std::unique_ptr<MergeBackend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace wsm::kernels
