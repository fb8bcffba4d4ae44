#pragma once
// Validation loss on fixed positions: every model scored by the trainer or by `wsm eval` sees the
// same windows of the validation text, so losses of trained and merged checkpoints are comparable.
#include <cstdint>
#include <vector>

#include "trainer/data.h"
#include "trainer/gpt_cpu.h"

namespace wsm::trainer {

struct EvalResult {
  double loss = 0;              // mean cross-entropy, nats per position
  double bits_per_char = 0;     // loss / ln 2 (one token = one byte = one character of ASCII text)
  std::int64_t positions = 0;
};

// Sums losses in double, in window order, so the result does not depend on the batch size.
EvalResult evaluate(GptCpu<float>& model, const std::vector<std::int32_t>& val, std::int64_t max_positions,
                    int batch = 32);

}  // namespace wsm::trainer
