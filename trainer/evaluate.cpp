#include "wsm/trainer/evaluate.h"

#include <algorithm>
#include <cmath>

namespace wsm::trainer {

EvalResult evaluate(GptCpu<float>& model, const std::vector<std::int32_t>& val, std::int64_t max_positions, int batch) {
  const int T = model.config().block_size;
  const ValWindows w = val_windows(val.size(), T, max_positions);
  double sum = 0;
  for (std::int64_t first = 0; first < w.windows; first += batch) {
    const int count = int(std::min<std::int64_t>(batch, w.windows - first));
    const Batch b = val_batch(val, w, first, count);
    model.forward(b.tokens, b.targets, count, T);
    for (float l : model.losses()) sum += double(l);
  }
  EvalResult r;
  r.positions = w.positions();
  r.loss = sum / double(r.positions);
  r.bits_per_char = r.loss / std::log(2.0);
  return r;
}

EvalResult evaluate_model(const ModelFile& m, const std::string& val_text, const std::string& val_name,
                          std::int64_t max_positions) {
  GptCpu<float> model(m.config);
  model.params() = m.params;
  return evaluate(model, m.vocab.encode(val_text, val_name), max_positions);
}

}  // namespace wsm::trainer
