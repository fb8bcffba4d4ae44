// CPU backend: the tensor is cut into blocks of kBlock elements; OpenMP spreads blocks over threads.
// Per block, each input is widened into a stack-sized scratch row, then FMA'd into M accumulator rows,
// so the inner loops are plain contiguous loops GCC vectorises. Every element sees the same operation
// chain as elem::merge_one whatever the thread count or block, so results are bit-identical.
//
// On x86-64 the hot loop is compiled twice: for AVX2+FMA+F16C (picked at run time) and for baseline
// x86-64, where fmaf is the (slow but exact) libm call, so semantics never depend on the machine.
// Elsewhere (aarch64: Grace) only the portable build exists; FMA is native there.
//
// The common case (f32 accumulation, f32/f16/bf16 in and out) has a third, register-tiled AVX2
// path: 16 elements x up to 4 outputs live in registers while the K inputs stream past, so each
// input vector is loaded once for all outputs and nothing round-trips through scratch memory. It
// performs the same FMA chain and the same rounding as elem::, bit for bit (NaN payloads aside).
#if defined(__x86_64__)
#define WSM_KERNELS_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define WSM_KERNELS_X86 0
#endif
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "wsm/kernels/merge.h"
#include "kernels/merge_element.h"
#include "kernels/problem_check.h"
#include "wsm/core/error.h"

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

#if WSM_KERNELS_X86
template <class Acc>
__attribute__((target("avx2,fma,f16c"), noinline)) void block_avx2(const Job<Acc>& job, std::size_t begin,
                                                                  std::size_t n, Acc* scratch) {
  block_body<Acc>(job, begin, n, scratch);
}
#endif
template <class Acc>
__attribute__((noinline)) void block_generic(const Job<Acc>& job, std::size_t begin, std::size_t n, Acc* scratch) {
  block_body<Acc>(job, begin, n, scratch);
}

// ---- Register-tiled AVX2 path (f32 accumulation; f32/f16/bf16 inputs and outputs) ----

bool tile_dtype(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }

template <class Acc>
bool tiles_apply(const Job<Acc>& job) {
  if constexpr (!std::is_same_v<Acc, float>) return false;
  for (DType t : job.in_t)
    if (!tile_dtype(t)) return false;
  for (DType t : job.out_t)
    if (!tile_dtype(t)) return false;
  return true;
}

#if WSM_KERNELS_X86
#define WSM_AVX2 __attribute__((target("avx2,fma,f16c"), always_inline)) inline

// Eight elements at p[i..i+8) widened exactly to f32.
WSM_AVX2 __m256 load8(const void* p, DType t, std::size_t i) {
  switch (t) {
    case DType::bf16: {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(p) + i));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case DType::f16:
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const std::uint16_t*>(p) + i)));
    default: return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  }
}

// Sixteen f32 values rounded to nearest even into bf16, NaN quieted as elem::f32_to_bf16 does.
WSM_AVX2 __m256i bf16_half(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i abs = _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, nan);
}

// f32 -> f16 by F16C (round to nearest even, exact subnormals and overflow to inf), with NaN made
// the canonical sign|0x7e00 that elem::f32_to_f16 gives.
WSM_AVX2 __m128i f16_8(__m256 v) {
  const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m128i abs = _mm_and_si128(h, _mm_set1_epi16(0x7fff));
  const __m128i nan = _mm_cmpgt_epi16(abs, _mm_set1_epi16(0x7c00));
  const __m128i canonical = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16(std::int16_t(0x8000))), _mm_set1_epi16(0x7e00));
  return _mm_blendv_epi8(h, canonical, nan);
}

WSM_AVX2 void store16(void* p, DType t, std::size_t i, __m256 a, __m256 b) {
  switch (t) {
    case DType::bf16: {
      // packus interleaves 128-bit lanes; the permute puts the 16 results back in order.
      const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_half(a), bf16_half(b)), 0xD8);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<std::uint16_t*>(p) + i), packed);
      break;
    }
    case DType::f16: {
      auto* d = static_cast<std::uint16_t*>(p) + i;
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d), f16_8(a));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + 8), f16_8(b));
      break;
    }
    default:
      _mm256_storeu_ps(static_cast<float*>(p) + i, a);
      _mm256_storeu_ps(static_cast<float*>(p) + i + 8, b);
      break;
  }
}

constexpr std::size_t kTile = 16;

// Outputs o0..o0+G-1 for elements [i, i+16): acc = fma(w, x_j, acc) for j = 0..K-1, as elem::merge_one.
template <int G>
WSM_AVX2 void tile(const Job<float>& job, std::size_t o0, std::size_t i) {
  __m256 lo[G], hi[G];
  for (int g = 0; g < G; ++g) lo[g] = hi[g] = _mm256_setzero_ps();
  for (std::size_t j = 0; j < job.k; ++j) {
    const __m256 x0 = load8(job.in[j], job.in_t[j], i), x1 = load8(job.in[j], job.in_t[j], i + 8);
    for (int g = 0; g < G; ++g) {
      const __m256 w = _mm256_broadcast_ss(&job.w[(o0 + g) * job.k + j]);
      lo[g] = _mm256_fmadd_ps(w, x0, lo[g]);
      hi[g] = _mm256_fmadd_ps(w, x1, hi[g]);
    }
  }
  for (int g = 0; g < G; ++g) store16(job.out[o0 + g], job.out_t[o0 + g], i, lo[g], hi[g]);
}

template <class Acc>
__attribute__((target("avx2,fma,f16c"), noinline)) void block_tiles(const Job<Acc>& job, std::size_t begin,
                                                                   std::size_t n) {
  if constexpr (std::is_same_v<Acc, float>) {
    const std::size_t end = begin + n, tiled_end = begin + n / kTile * kTile;
    for (std::size_t i = begin; i < tiled_end; i += kTile)
      for (std::size_t o0 = 0; o0 < job.m; o0 += 4) switch (std::min<std::size_t>(4, job.m - o0)) {
          case 1: tile<1>(job, o0, i); break;
          case 2: tile<2>(job, o0, i); break;
          case 3: tile<3>(job, o0, i); break;
          default: tile<4>(job, o0, i); break;
        }
    for (std::size_t i = tiled_end; i < end; ++i)  // the tail, element by element
      for (std::size_t o = 0; o < job.m; ++o)
        elem::store(job.out[o], job.out_t[o], i,
                    elem::merge_one<float>(job.in.data(), job.in_t.data(), &job.w[o * job.k], int(job.k), i));
  }
}

bool have_avx2_fma() {
  static const bool yes = [] {
    __builtin_cpu_init();
    // F16C through cpuid: clang before 15 does not know "f16c" in __builtin_cpu_supports (the fuzz build).
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  }();
  return yes;
}
#else
bool have_avx2_fma() { return false; }  // not x86: the portable path only
#endif

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
  const bool tiles = fast && tiles_apply(job);
  // Small problems are not worth waking the thread team; callers running merges side by side ask
  // for one thread (no team, so no OpenMP spin-waiting against their own threads).
  const int threads = p.threads > 0 ? p.threads : (blocks < 4 ? 1 : omp_get_max_threads());
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    std::vector<Acc> scratch(tiles ? 0 : (job.m + 1) * kBlock);
#pragma omp for schedule(static)
    for (std::size_t b = 0; b < blocks; ++b) {
      const std::size_t begin = b * kBlock;
      const std::size_t n = std::min(kBlock, p.count - begin);
#if WSM_KERNELS_X86
      if (tiles)
        block_tiles<Acc>(job, begin, n);
      else if (fast)
        block_avx2<Acc>(job, begin, n, scratch.data());
      else
#endif
        block_generic<Acc>(job, begin, n, scratch.data());
    }
  }
}

class CpuBackend final : public MergeBackend {
 public:
  std::string name() const override { return "cpu"; }
  int concurrent_calls() const override { return std::max(1, omp_get_max_threads()); }
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
