// CPU merge backend against a double-precision reference, against the per-element code that the CUDA
// kernel is built from (compiled here on the host: must be bit-identical), run to run and across
// OpenMP thread counts.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <string>

#include "wsm/kernels/merge.h"
#include "kernels/merge_element.h"
#include "merge_reference.h"
#include "wsm/core/error.h"

namespace wsm::kernels {
namespace {

using test::Buffer;

struct Case {
  std::vector<Buffer> in;
  std::vector<double> w;  // M x K
  std::vector<Buffer> out;
  bool f64 = false;

  MergeProblem problem(std::vector<MergeInput>& mi, std::vector<MergeOutput>& mo) {
    mi.clear();
    mo.clear();
    for (auto& b : in) mi.push_back({b.bytes.data(), b.dtype});
    for (auto& b : out) mo.push_back({b.bytes.data(), b.dtype});
    return {mi, w, mo, in.empty() ? 0 : in[0].size(), f64};
  }
  void run(MergeBackend& backend) {
    std::vector<MergeInput> mi;
    std::vector<MergeOutput> mo;
    backend.merge(problem(mi, mo));
  }
};

// K inputs alternating two dtypes, M outputs (dtype out), random weights summing to 1 per row
// (some negative, as a non-monotone user table may give).
Case make_case(DType a, DType b, std::size_t k, std::size_t m, std::size_t n, DType out, bool f64,
               std::uint64_t seed) {
  Case c;
  for (std::size_t j = 0; j < k; ++j) c.in.push_back(test::random_buffer(j % 2 ? b : a, n, seed * 131 + j));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-0.2, 1.0);
  for (std::size_t o = 0; o < m; ++o) {
    double sum = 0;
    std::vector<double> row(k);
    for (auto& x : row) sum += (x = u(rng));
    for (auto& x : row) c.w.push_back(x / sum);
  }
  for (std::size_t o = 0; o < m; ++o) c.out.emplace_back(out, n);
  c.f64 = f64;
  return c;
}

void expect_near_reference(const Case& c, const std::string& what) {
  const std::size_t k = c.in.size();
  for (std::size_t o = 0; o < c.out.size(); ++o) {
    const auto ref = test::reference_merge(c.in, c.w, o);
    for (std::size_t i = 0; i < ref.value.size(); ++i) {
      const double got = c.out[o].get(i);
      const double bound = test::error_bound(c.out[o].dtype, c.f64, k, ref.value[i], ref.magnitude[i]);
      ASSERT_LE(std::fabs(got - ref.value[i]), bound)
          << what << " output " << o << " element " << i << " ref " << ref.value[i] << " got " << got;
    }
  }
}

// The host build of the CUDA kernel's per-element code.
template <class Acc>
void expect_equals_elementwise(const Case& c, const std::string& what) {
  const std::size_t k = c.in.size();
  std::vector<const void*> ptrs;
  std::vector<DType> types;
  for (const auto& b : c.in) {
    ptrs.push_back(b.bytes.data());
    types.push_back(b.dtype);
  }
  std::vector<Acc> w(c.w.begin(), c.w.end());
  for (std::size_t o = 0; o < c.out.size(); ++o) {
    Buffer expect(c.out[o].dtype, c.out[o].size());
    for (std::size_t i = 0; i < expect.size(); ++i)
      elem::store(expect.bytes.data(), expect.dtype, i, elem::merge_one<Acc>(ptrs.data(), types.data(), &w[o * k], int(k), i));
    ASSERT_TRUE(expect.bytes == c.out[o].bytes) << what << " output " << o << " differs from the per-element code";
  }
}

std::string label(DType a, DType b, DType out, std::size_t n, bool f64) {
  return std::string(dtype_name(a)) + "+" + std::string(dtype_name(b)) + "->" + std::string(dtype_name(out)) +
         " n=" + std::to_string(n) + (f64 ? " acc=f64" : " acc=f32");
}

TEST(MergeCpu, EveryDtypePairAndSizeMatchesDoubleReference) {
  auto backend = make_cpu_backend();
  // 0, 1, odd, around the 2048-element block and the 8-wide vectors, several blocks with a tail.
  const std::size_t sizes[] = {0, 1, 7, 9, 2047, 2048, 2049, 3 * 2048 + 13};
  std::uint64_t seed = 1;
  for (DType a : test::kFloatTypes)
    for (DType b : test::kFloatTypes)
      for (DType out : test::kFloatTypes)
        for (std::size_t n : sizes)
          for (bool f64 : {false, true}) {
            Case c = make_case(a, b, 5, 3, n, out, f64, ++seed);
            c.run(*backend);
            const std::string what = label(a, b, out, n, f64);
            expect_near_reference(c, what);
            if (f64)
              expect_equals_elementwise<double>(c, what);
            else
              expect_equals_elementwise<float>(c, what);
          }
}

// Output counts 1..9 cover the register tiles' groups of 4 outputs and their remainders, with
// sizes below, at and past the 16-element tile; every output must equal the per-element code.
TEST(MergeCpu, EveryOutputCountMatchesElementwise) {
  auto backend = make_cpu_backend();
  std::uint64_t seed = 900;
  for (std::size_t m = 1; m <= 9; ++m)
    for (std::size_t n : {std::size_t(15), std::size_t(16), std::size_t(4099)})
      for (DType out : {DType::bf16, DType::f16, DType::f32}) {
        Case c = make_case(DType::bf16, m % 2 ? DType::f16 : DType::f32, 6, m, n, out, false, ++seed);
        c.run(*backend);
        const std::string what = "m=" + std::to_string(m) + " " + label(DType::bf16, DType::f16, out, n, false);
        expect_near_reference(c, what);
        expect_equals_elementwise<float>(c, what);
      }
}

// Values that round across bf16/f16 boundaries: ties to even, overflow to inf, f16 subnormals.
TEST(MergeCpu, RoundingEdgesMatchElementwise) {
  auto backend = make_cpu_backend();
  for (DType out : {DType::bf16, DType::f16}) {
    Case c = make_case(DType::f32, DType::f32, 1, 1, 64, out, false, 5);
    c.w = {1.0};
    const float edges[] = {1.00390625f, 1.01171875f, 65504.f, 65519.f, 65520.f, 3.4e38f, -3.4e38f, 6.0e-8f,
                           3.0e-8f,     2.9e-8f,     1e-5f,   -1e-5f,  0.f,     -0.f,    1.0009765625f, 1.0029296875f};
    for (std::size_t i = 0; i < 64; ++i) c.in[0].set(i, edges[i % 16] * (i < 32 ? 1.f : 1.0000001f));
    c.run(*backend);
    expect_equals_elementwise<float>(c, std::string("edges -> ") + std::string(dtype_name(out)));
  }
}

TEST(MergeCpu, SingleInputIsExactCopyAndCastIsRoundToNearestEven) {
  auto backend = make_cpu_backend();
  for (DType out : test::kFloatTypes) {
    Case c = make_case(DType::f32, DType::f32, 1, 1, 1000, out, false, 7);
    c.w = {1.0};
    c.run(*backend);
    Buffer expect(out, 1000);
    for (std::size_t i = 0; i < 1000; ++i) expect.set(i, c.in[0].get(i));  // dtype.h's RNE cast
    EXPECT_EQ(0, std::memcmp(expect.bytes.data(), c.out[0].bytes.data(), expect.bytes.size())) << dtype_name(out);
  }
}

TEST(MergeCpu, BitIdenticalAcrossRerunsAndThreadCounts) {
  auto backend = make_cpu_backend();
  const int saved = omp_get_max_threads();
  for (bool f64 : {false, true}) {
    Case base = make_case(DType::bf16, DType::f16, 9, 3, 100'003, DType::bf16, f64, 42);
    omp_set_num_threads(1);
    base.run(*backend);
    for (int threads : {1, 2, 3, 8}) {
      omp_set_num_threads(threads);
      Case again = base;
      for (auto& o : again.out) std::fill(o.bytes.begin(), o.bytes.end(), std::byte{0x55});
      again.run(*backend);
      for (std::size_t o = 0; o < base.out.size(); ++o)
        EXPECT_EQ(base.out[o].bytes, again.out[o].bytes) << "threads=" << threads << " output " << o;
    }
  }
  omp_set_num_threads(saved);
}

TEST(MergeCpu, NonFiniteInputsPropagate) {
  auto backend = make_cpu_backend();
  Case c = make_case(DType::f32, DType::f32, 2, 1, 4, DType::bf16, false, 3);
  c.w = {0.5, 0.5};
  c.in[0].set(1, INFINITY);
  c.in[1].set(2, NAN);
  c.run(*backend);
  EXPECT_TRUE(std::isinf(c.out[0].get(1)));
  EXPECT_TRUE(std::isnan(c.out[0].get(2)));
  EXPECT_TRUE(std::isfinite(c.out[0].get(0)));
}

TEST(MergeCpu, RejectsBadArguments) {
  auto backend = make_cpu_backend();
  Case c = make_case(DType::f32, DType::f32, 3, 2, 10, DType::f32, false, 5);
  std::vector<MergeInput> mi;
  std::vector<MergeOutput> mo;
  MergeProblem p = c.problem(mi, mo);
  std::vector<double> short_w(5);
  p.weights = short_w;
  EXPECT_THROW(backend->merge(p), Error);

  p = c.problem(mi, mo);
  mi[1].dtype = DType::i32;
  EXPECT_THROW(backend->merge(p), Error);

  p = c.problem(mi, mo);
  mo[0].dtype = DType::u8;
  EXPECT_THROW(backend->merge(p), Error);

  p = c.problem(mi, mo);
  mi[0].data = nullptr;
  EXPECT_THROW(backend->merge(p), Error);

  p = c.problem(mi, mo);
  p.inputs = {};
  p.weights = {};
  EXPECT_THROW(backend->merge(p), Error);
}

TEST(MergeBackends, SelectionByName) {
  for (const char* name : {"cpu", "cuda", "cublas", "auto"})
    EXPECT_EQ(name, backend_kind_name(parse_backend_kind(name)));
  EXPECT_THROW(parse_backend_kind("tpu"), Error);
  EXPECT_EQ("cpu", make_backend(parse_backend_kind("cpu"))->name());
  EXPECT_FALSE(backend_uses_gpu(BackendKind::cpu));
  EXPECT_TRUE(backend_uses_gpu(BackendKind::cublas));
  if (!cuda_available()) {
    EXPECT_EQ("cpu", make_backend(BackendKind::automatic)->name());
    EXPECT_FALSE(backend_uses_gpu(BackendKind::automatic));
    EXPECT_THROW(make_cuda_backend(), Error);
    EXPECT_THROW(make_backend(BackendKind::cublas), Error);
  } else {
    EXPECT_EQ("cuda", make_backend(BackendKind::automatic)->name());
  }
}

}  // namespace
}  // namespace wsm::kernels
