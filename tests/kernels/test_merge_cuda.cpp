// CUDA backends against the CPU backend: the fused kernel shares the per-element code and must be
// bit-identical; cuBLAS sums in its own order and is checked against the double reference instead.
// Registered always; skips with a message when no CUDA device is present.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "wsm/kernels/cuda_bench.h"
#include "wsm/kernels/merge.h"
#include "merge_reference.h"
#include "wsm/core/error.h"

namespace wsm::kernels {
namespace {

using test::Buffer;

#define SKIP_WITHOUT_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device (or wsm built without CUDA): CUDA merge tests skipped"

struct Outputs {
  std::vector<Buffer> out;
};

Outputs run(MergeBackend& backend, const std::vector<Buffer>& in, const std::vector<double>& w, DType out_t, bool f64) {
  std::vector<MergeInput> mi;
  for (const auto& b : in) mi.push_back({b.bytes.data(), b.dtype});
  const std::size_t m = w.size() / in.size(), n = in[0].size();
  Outputs r;
  for (std::size_t o = 0; o < m; ++o) r.out.emplace_back(out_t, n);
  std::vector<MergeOutput> mo;
  for (auto& b : r.out) mo.push_back({b.bytes.data(), b.dtype});
  backend.merge({mi, w, mo, n, f64});
  return r;
}

std::vector<double> random_weights(std::size_t k, std::size_t m, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> w;
  for (std::size_t o = 0; o < m; ++o) {
    std::vector<double> row(k);
    double s = 0;
    for (auto& x : row) s += (x = u(rng));
    for (auto& x : row) w.push_back(x / s);
  }
  return w;
}

TEST(MergeCuda, WithoutDeviceFactoryThrowsClearly) {
  if (cuda_available()) GTEST_SKIP() << "a CUDA device is present: the no-device path is not reachable";
  EXPECT_THROW(make_cuda_backend(), Error);
  EXPECT_THROW(cuda_kernel_bench({.count = 16}), Error);
}

TEST(MergeCuda, FusedKernelBitIdenticalToCpu) {
  SKIP_WITHOUT_GPU();
  auto cpu = make_cpu_backend();
  // A small chunk forces several chunks through both slots, with a tail in the last one.
  auto gpu = make_cuda_backend({.use_cublas = false, .chunk_bytes = 64 << 10});
  std::uint64_t seed = 0;
  for (DType a : test::kFloatTypes)
    for (DType b : test::kFloatTypes)
      for (DType out : test::kFloatTypes)
        for (std::size_t n : {std::size_t(1), std::size_t(7), std::size_t(8), std::size_t(33'333), std::size_t(100'005)})
          for (std::size_t m : {1, 3, 6})
            for (bool f64 : {false, true}) {
              std::vector<Buffer> in;
              for (std::size_t j = 0; j < 5; ++j) in.push_back(test::random_buffer(j % 2 ? b : a, n, ++seed));
              const auto w = random_weights(5, m, seed);
              const Outputs c = run(*cpu, in, w, out, f64), g = run(*gpu, in, w, out, f64);
              for (std::size_t o = 0; o < m; ++o)
                ASSERT_EQ(c.out[o].bytes, g.out[o].bytes)
                    << dtype_name(a) << "+" << dtype_name(b) << "->" << dtype_name(out) << " n=" << n << " m=" << m
                    << " f64=" << f64 << " output " << o;
            }
}

TEST(MergeCuda, CublasWithinToleranceOfDoubleReference) {
  SKIP_WITHOUT_GPU();
  auto gpu = make_cuda_backend({.use_cublas = true, .chunk_bytes = 256 << 10});
  std::uint64_t seed = 100;
  for (DType a : test::kFloatTypes)
    for (DType out : test::kFloatTypes)
      for (bool f64 : {false, true}) {
        const std::size_t n = 70'001, k = 7, m = 3;
        std::vector<Buffer> in;
        for (std::size_t j = 0; j < k; ++j) in.push_back(test::random_buffer(j % 3 ? a : DType::bf16, n, ++seed));
        const auto w = random_weights(k, m, seed);
        const Outputs g = run(*gpu, in, w, out, f64);
        for (std::size_t o = 0; o < m; ++o) {
          const auto ref = test::reference_merge(in, w, o);
          for (std::size_t i = 0; i < n; ++i)
            ASSERT_LE(std::fabs(g.out[o].get(i) - ref.value[i]),
                      test::error_bound(out, f64, k, ref.value[i], ref.magnitude[i]))
                << "cublas " << dtype_name(a) << "->" << dtype_name(out) << " element " << i;
        }
      }
}

TEST(MergeCuda, KernelBenchRuns) {
  SKIP_WITHOUT_GPU();
  const auto t = cuda_kernel_bench({.count = 1 << 20, .inputs = 4, .outputs = 2, .repeats = 2});
  EXPECT_GT(t.fused_s, 0);
  EXPECT_GT(t.cublas_s, 0);
  EXPECT_GT(t.memcpy_d2d_s, 0);
  EXPECT_FALSE(t.device.empty());
}

}  // namespace
}  // namespace wsm::kernels
