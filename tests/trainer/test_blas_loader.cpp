// trainer/blas_loader.h: the BLAS is loaded on first use (not linked into wsm), and what it loads
// computes GEMMs: cblas_sgemm and cblas_dgemm against a double-precision loop, with transposes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "trainer/blas_loader.h"

namespace wsm::trainer::cpu {
namespace {

// C = A op(B) for row-major A (M x K) and B (K x N, or N x K when trans_b), in double.
std::vector<double> reference(const std::vector<double>& a, const std::vector<double>& b, int M, int N, int K,
                              bool trans_b) {
  std::vector<double> c(std::size_t(M) * N, 0.0);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      for (int k = 0; k < K; ++k)
        c[std::size_t(i) * N + j] +=
            a[std::size_t(i) * K + k] * (trans_b ? b[std::size_t(j) * K + k] : b[std::size_t(k) * N + j]);
  return c;
}

TEST(BlasLoader, LoadsACblasThatMultipliesRight) {
  const Blas& b = blas();
  ASSERT_NE(b.library, nullptr);
  EXPECT_EQ(&b, &blas()) << "loaded once";
  constexpr int M = 7, N = 5, K = 33;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> a(M * K), bm(K * N);
  for (auto& x : a) x = u(rng);
  for (auto& x : bm) x = u(rng);
  for (const bool trans_b : {false, true}) {
    // As stored for op(B) = B^T: the same matrix written N x K.
    std::vector<double> bt(bm.size());
    for (int k = 0; k < K; ++k)
      for (int j = 0; j < N; ++j) bt[std::size_t(j) * K + k] = bm[std::size_t(k) * N + j];
    const auto& bs = trans_b ? bt : bm;
    const auto want = reference(a, bs, M, N, K, trans_b);
    std::vector<double> c(M * N, 0.0);
    b.dgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0, a.data(), K, bs.data(),
            trans_b ? K : N, 0.0, c.data(), N);
    std::vector<float> af(a.begin(), a.end()), bf(bs.begin(), bs.end()), cf(M * N, 0.0f);
    b.sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, af.data(), K, bf.data(),
            trans_b ? K : N, 0.0f, cf.data(), N);
    for (int i = 0; i < M * N; ++i) {
      EXPECT_NEAR(c[i], want[i], 1e-12) << "dgemm " << i;
      EXPECT_NEAR(cf[i], want[i], 2e-5) << "sgemm " << i;  // K = 33 f32 products of values in [-1, 1]
    }
  }
}

// The point of loading it: `wsm` itself links no BLAS (ldd lists what the loader maps at start-up).
TEST(BlasLoader, WsmLinksNoBlas) {
  const std::string wsm = std::string(WSM_BINARY_DIR) + "/wsm";
  const std::string listing = ::testing::TempDir() + "wsm-ldd.txt";
  ASSERT_EQ(std::system(("ldd '" + wsm + "' > '" + listing + "'").c_str()), 0);
  std::ifstream f(listing);
  std::string line, all;
  while (std::getline(f, line)) all += line + "\n";
  EXPECT_NE(all.find("libc.so"), std::string::npos) << all;
  EXPECT_EQ(all.find("blas"), std::string::npos) << "wsm links a BLAS:\n" << all;
}

}  // namespace
}  // namespace wsm::trainer::cpu
