#pragma once
// Validation loss on fixed positions: every model scored by the trainer or by `wsm eval` sees the
// same windows of the validation text, so losses of trained and merged checkpoints are comparable.
#include <cstdint>
#include <vector>

#include <string_view>

#include "wsm/trainer/checkpoint_io.h"
#include "wsm/trainer/data.h"
#include "wsm/trainer/gpt_cpu.h"

namespace wsm::trainer {

struct EvalResult {
  double loss = 0;              // mean cross-entropy, nats per position
  double bits_per_char = 0;     // loss / ln 2 (one token = one byte = one character of ASCII text)
  std::int64_t positions = 0;
};

// Sums losses in double, in window order, so the result does not depend on the batch size.
EvalResult evaluate(GptCpu<float>& model, const std::vector<std::int32_t>& val, std::int64_t max_positions,
                    int batch = 32);

// Scores a loaded checkpoint on validation text as `wsm eval` does (its vocabulary encodes the text;
// `val_name` names the text in errors).
EvalResult evaluate_model(const ModelFile& m, const std::string& val_text, const std::string& val_name,
                          std::int64_t max_positions);

}  // namespace wsm::trainer
