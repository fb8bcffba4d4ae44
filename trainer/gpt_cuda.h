#pragma once
// The GPT model on a CUDA device, mirroring GptCpu: same flat parameter layout, same layer math
// (cuBLAS matmuls + layers_cuda kernels), with AdamW and clipping kept on the device. Host-only
// interface (pimpl) so plain C++ code can use it; only exists in builds with WSM_HAVE_CUDA.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "wsm/trainer/adamw.h"
#include "wsm/trainer/model.h"

namespace wsm::trainer {

class GptCuda {
 public:
  explicit GptCuda(const GptConfig& cfg);  // throws wsm::Error without a device
  ~GptCuda();
  GptCuda(const GptCuda&) = delete;
  GptCuda& operator=(const GptCuda&) = delete;

  void set_params(const std::vector<float>& params);
  std::vector<float> params() const;
  std::vector<float> grads() const;
  void set_optim(const AdamWState<float>& st);
  AdamWState<float> optim() const;

  double forward(std::span<const std::int32_t> tokens, std::span<const std::int32_t> targets, int B, int T);
  void zero_grad();
  void backward();
  double clip_grad_norm(double max_norm);  // returns the norm before clipping
  void adamw_step(const AdamWConfig& cfg, double lr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsm::trainer
