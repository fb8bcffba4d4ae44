#pragma once
// The trainer's files. Model checkpoints (DIR/step_<N>.h5) hold the parameters only, as named f32
// tensors with step/tokens/lr and the model config + vocabulary in metadata: what the merger and
// `wsm merge` consume and `wsm eval` rebuilds a model from. The resume state (DIR/state.h5) adds the
// AdamW moments (`optim.m.<name>`, `optim.v.<name>`) and everything else a bit-exact resume needs.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "wsm/formats/checkpoint.h"
#include "wsm/trainer/adamw.h"
#include "wsm/trainer/data.h"
#include "wsm/trainer/model.h"

namespace wsm::trainer {

// Metadata keys the trainer writes besides the model.* config.
inline constexpr const char* kVocabKey = "data.vocab";  // hex bytes, in token-id order

struct ModelFile {
  GptConfig config;
  Vocab vocab;
  std::vector<float> params;  // wsm flat layout
  CheckpointMeta meta;
};

// Model tensors as checkpoint tensors (f32, named per param_layout).
std::vector<TensorInfo> model_tensor_infos(const GptConfig& cfg);

void save_model(const std::filesystem::path& path, const GptConfig& cfg, const Vocab& vocab,
                const std::vector<float>& params, CheckpointMeta meta);

// Loads any checkpoint holding every model tensor (f32, f16, bf16 or f64: merged outputs may be
// cast). When the file's metadata lacks the model config or vocabulary (a merge that dropped
// them), `fallback` supplies them; otherwise a wsm::Error names the file.
ModelFile load_model(const std::filesystem::path& path, const ModelFile* fallback = nullptr);

struct TrainState {
  ModelFile model;                // params + config + vocab + meta (step, tokens, lr, extra)
  AdamWState<float> optim;
  std::uint64_t seed = 0;
  std::int64_t step = 0;          // updates done; the next batch is batch_at(seed, step)
};

void save_state(const std::filesystem::path& path, const TrainState& state);
TrainState load_state(const std::filesystem::path& path);

}  // namespace wsm::trainer
