#pragma once
// A training backend owns the model and optimizer state on its device and runs whole steps
// (forward, backward, clip, AdamW). The CPU backend is the reference; the CUDA one shares the
// parameter layout, so checkpoints and resume states are interchangeable between them.
#include <memory>
#include <string>
#include <vector>

#include "wsm/trainer/adamw.h"
#include "wsm/trainer/data.h"
#include "wsm/trainer/model.h"
#include "trainer/step.h"

namespace wsm::trainer {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual StepResult step(const Batch& batch, int B, int T, double lr) = 0;
  // Parameters and AdamW state in the flat layout (device -> host for the CUDA backend).
  virtual void upload(const std::vector<float>& params, const AdamWState<float>& optim) = 0;
  virtual void download(std::vector<float>& params, AdamWState<float>& optim) = 0;
};

std::unique_ptr<Backend> make_cpu_backend(const GptConfig& cfg, const AdamWConfig& opt, double clip);

// Throws wsm::Error when built without CUDA or when no CUDA device is present.
std::unique_ptr<Backend> make_cuda_backend(const GptConfig& cfg, const AdamWConfig& opt, double clip);
bool cuda_device_available();

}  // namespace wsm::trainer
