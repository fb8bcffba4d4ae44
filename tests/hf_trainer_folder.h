#pragma once
// Test support: a Hugging Face Trainer output folder as Trainer.save_model/_save_checkpoint lay it
// out (transformers 4.4x): output_dir/checkpoint-N/ with model.safetensors (no wsm metadata: no
// step), config.json, generation_config.json, trainer_state.json (json.dumps(asdict(state),
// indent=2, sort_keys=True)), and the torch.save files optimizer.pt, scheduler.pt, rng_state.pth
// and training_args.bin written by real torch.save (WSM_PYTHON with torch).
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint.h"

namespace wsm::test {

inline std::string trainer_state_json(std::int64_t step, std::int64_t max_steps, double lr, std::int64_t tokens) {
  nlohmann::json log = nlohmann::json::array();
  for (std::int64_t s = step / 2; s <= step; s += step / 2)  // logging_steps = save_steps / 2
    log.push_back({{"epoch", double(s) / double(max_steps)},
                   {"grad_norm", 1.25},
                   {"learning_rate", s == step ? lr : lr * 1.1},
                   {"loss", 2.0 + 1.0 / double(s)},
                   {"step", s}});
  const nlohmann::json state = {
      {"best_global_step", nullptr}, {"best_metric", nullptr}, {"best_model_checkpoint", nullptr},
      {"epoch", double(step) / double(max_steps)}, {"eval_steps", 500}, {"global_step", step},
      {"is_hyper_param_search", false}, {"is_local_process_zero", true}, {"is_world_process_zero", true},
      {"log_history", log}, {"logging_steps", step / 2}, {"max_steps", max_steps},
      {"num_input_tokens_seen", tokens}, {"num_train_epochs", 1}, {"save_steps", 500},
      {"stateful_callbacks",
       {{"TrainerControl",
         {{"args",
           {{"should_epoch_stop", false}, {"should_evaluate", false}, {"should_log", false}, {"should_save", true},
            {"should_training_stop", false}}},
          {"attributes", nlohmann::json::object()}}}}},
      {"total_flos", 1.2345e12}, {"train_batch_size", 8}, {"trial_name", nullptr}, {"trial_params", nullptr}};
  return state.dump(2);
}

inline void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

// output_dir/checkpoint-<step>/ with `tensors` in model.safetensors (metadata {"format": "pt"}).
// trainer_state: false leaves trainer_state.json out (the step then comes from the folder name).
inline std::filesystem::path write_hf_checkpoint(const std::filesystem::path& output_dir, std::int64_t step,
                                                 std::vector<Tensor> tensors, double lr, std::int64_t tokens,
                                                 bool trainer_state = true) {
  const auto dir = output_dir / ("checkpoint-" + std::to_string(step));
  std::filesystem::create_directories(dir);
  Checkpoint c;
  c.meta.extra["format"] = "pt";
  c.tensors = std::move(tensors);
  save_checkpoint(dir / "model.safetensors", c);
  write_text(dir / "config.json", R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float32"})");
  write_text(dir / "generation_config.json", R"({"_from_model_config": true, "transformers_version": "4.46.0"})");
  if (trainer_state) write_text(dir / "trainer_state.json", trainer_state_json(step, 1500, lr, tokens));
  return dir;
}

// The torch.save files a Trainer writes beside the model, by real torch.save (zip format, and the
// legacy pickle format for training_args.bin as older transformers wrote it). Returns the exit code.
inline int write_torch_files(const std::vector<std::filesystem::path>& dirs) {
  std::string script =
      "import sys, torch\n"
      "for d in sys.argv[1:]:\n"
      "    torch.save({'state': {}, 'param_groups': [{'lr': 1e-4, 'params': [0]}]}, d + '/optimizer.pt')\n"
      "    torch.save({'last_epoch': 1, '_step_count': 2}, d + '/scheduler.pt')\n"
      "    torch.save({'python': 1, 'cpu': torch.get_rng_state()}, d + '/rng_state.pth')\n"
      "    torch.save({'output_dir': 'out'}, d + '/training_args.bin', _use_new_zipfile_serialization=False)\n";
  std::string cmd = std::string(WSM_PYTHON) + " -c \"" + script + "\"";
  for (const auto& d : dirs) cmd += " '" + d.string() + "'";
  return std::system(cmd.c_str());
}

}  // namespace wsm::test
