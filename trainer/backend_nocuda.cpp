// Stand-ins used when the build has no CUDA (WSM_HAVE_CUDA unset): --device cuda fails clearly.
#ifndef WSM_HAVE_CUDA
#include "wsm/core/error.h"
#include "trainer/backend.h"

namespace wsm::trainer {

bool cuda_device_available() { return false; }

std::unique_ptr<Backend> make_cuda_backend(const GptConfig&, const AdamWConfig&, double) {
  throw Error("--device cuda: this wsm was built without CUDA (configure with -DWSM_CUDA=ON and nvcc present)");
}

}  // namespace wsm::trainer
#endif
