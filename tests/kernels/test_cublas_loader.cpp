// cuBLAS is loaded on first use, not at start-up: this process (which links every wsm library, as
// the wsm binary does) must not map libcublas until the loader is called, and then must resolve
// every entry point. Needs no GPU: loading the library does not touch a device.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "wsm/core/error.h"

#ifdef WSM_HAVE_CUDA
#include "kernels/cuda_support/cublas_loader.h"
#endif

namespace {

#ifdef WSM_HAVE_CUDA
bool process_maps(const std::string& library) {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find(library) != std::string::npos) return true;
  return false;
}
#endif

TEST(CublasLoader, LoadsOnFirstUseNotAtStartUp) {
#ifdef WSM_HAVE_CUDA
  ASSERT_FALSE(wsm::cuda::cublas_loaded());
  EXPECT_FALSE(process_maps("libcublas")) << "libcublas is mapped before first use: is it linked again?";
  // $WSM_CUBLAS_PATH is the user's choice: a wrong one fails naming it (no silent fallback), and a
  // failed load is retried on the next call.
  ::setenv("WSM_CUBLAS_PATH", "/nonexistent/libcublas.so", 1);
  try {
    wsm::cuda::cublas();
    ADD_FAILURE() << "loaded cuBLAS from a path that does not exist";
  } catch (const wsm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("WSM_CUBLAS_PATH=/nonexistent/libcublas.so"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(wsm::cuda::cublas_loaded());
  ::unsetenv("WSM_CUBLAS_PATH");
  const auto& api = wsm::cuda::cublas();
  EXPECT_TRUE(wsm::cuda::cublas_loaded());
  EXPECT_TRUE(process_maps("libcublas.so"));
  EXPECT_NE(api.create, nullptr);
  EXPECT_NE(api.destroy, nullptr);
  EXPECT_NE(api.set_stream, nullptr);
  EXPECT_NE(api.sgemm, nullptr);
  EXPECT_NE(api.gemm_ex, nullptr);
  EXPECT_EQ(&api, &wsm::cuda::cublas());  // loaded once
#else
  GTEST_SKIP() << "wsm built without CUDA: there is no cuBLAS to load";
#endif
}

}  // namespace
