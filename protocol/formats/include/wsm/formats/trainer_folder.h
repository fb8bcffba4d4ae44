#pragma once
// Where a checkpoint sits says its step when the file does not: a Hugging Face Trainer folder
// (output_dir/checkpoint-N/ holding model.safetensors or a sharded set, config.json and
// trainer_state.json) records global_step, the tokens seen and the learning rate; its name says N;
// wsm's own names say step_N (checkpoint_name.h). open_checkpoint() fills what the file lacks from
// here, so `checkpoint-*` globs order by step, not by text.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace wsm {

struct LayoutPosition {
  std::optional<std::int64_t> step, tokens;
  std::optional<double> lr;
  std::string source;  // where the step came from: "trainer_state.json", "folder name", "file name"
};

// For a checkpoint path (a file, a directory or a *.index.json): trainer_state.json's global_step
// (num_input_tokens_seen when > 0, the learning rate logged at that step) in the checkpoint's
// folder, else a checkpoint-N folder name, else a step_N file name. Throws wsm::Error naming the
// file when a trainer_state.json is there but unreadable or without an integer global_step.
LayoutPosition position_from_layout(const std::filesystem::path& path);

// A command-line checkpoint argument: "PATH" or "PATH@STEP" (the step given explicitly, for inputs
// that record none). A path that exists as written is taken whole, even with an '@' in it.
struct CheckpointArg {
  std::filesystem::path path;
  std::optional<std::int64_t> step;
};
CheckpointArg parse_checkpoint_arg(const std::string& text);

}  // namespace wsm
