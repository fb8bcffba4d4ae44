// `wsm eval CKPT...`: validation loss and bits per character of every checkpoint given (trained or
// merged), on the same fixed validation positions, as a table or JSON.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "wsm/core/error.h"
#include "tools/commands.h"
#include "tools/corpus/austen.h"
#include "wsm/trainer/checkpoint_io.h"
#include "wsm/trainer/evaluate.h"
#include "trainer/layers_cpu.h"
#include "wsm/trainer/train.h"

namespace wsm::tools {
namespace {

struct EvalArgs {
  std::vector<std::filesystem::path> checkpoints;
  std::filesystem::path val;
  std::int64_t positions = 131072;
  bool json = false;
  int threads = 2;
};

void run_eval(const EvalArgs& a) {
  trainer::cpu::set_num_threads(std::max(1, a.threads));
  std::filesystem::path val_path = a.val;
  if (val_path.empty()) val_path = trainer::default_corpus(austen_root()).val;
  const std::string val_text = trainer::read_text_file(val_path);

  // Models lacking config metadata (a merge that dropped it) borrow it from another file given.
  std::vector<std::optional<trainer::ModelFile>> models;
  models.reserve(a.checkpoints.size());  // `reference` points into it
  const trainer::ModelFile* reference = nullptr;
  for (const auto& p : a.checkpoints) {
    try {
      models.push_back(trainer::load_model(p));
      if (!reference) reference = &*models.back();
    } catch (const wsm::Error&) {
      models.push_back(std::nullopt);  // retried below with a reference config
    }
  }
  // without a reference this rethrows the file's own error, before any output
  for (std::size_t i = 0; i < models.size(); ++i)
    if (!models[i]) models[i] = trainer::load_model(a.checkpoints[i], reference);
  nlohmann::json out = nlohmann::json::array();
  if (!a.json) std::printf("%-48s %8s %12s %10s %10s\n", "checkpoint", "step", "val_loss", "bits/char", "positions");
  for (std::size_t i = 0; i < models.size(); ++i) {
    const auto& m = *models[i];
    if (reference && !(m.vocab == reference->vocab))
      throw Error(a.checkpoints[i].string() + ": vocabulary differs from the other checkpoints'");
    const auto r = trainer::evaluate_model(m, val_text, val_path.string(), a.positions);
    const long long step = m.meta.step ? (long long)*m.meta.step : -1;
    if (a.json) {
      out.push_back({{"checkpoint", a.checkpoints[i].string()}, {"step", m.meta.step ? nlohmann::json(*m.meta.step) : nlohmann::json()},
                     {"val_loss", r.loss}, {"bits_per_char", r.bits_per_char}, {"positions", r.positions},
                     {"val", val_path.string()}});
    } else {
      std::printf("%-48s %8lld %12.5f %10.5f %10lld\n", a.checkpoints[i].string().c_str(), step, r.loss,
                  r.bits_per_char, (long long)r.positions);
      std::fflush(stdout);
    }
  }
  if (a.json) std::printf("%s\n", out.dump(2).c_str());
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Validation loss and bits/char of checkpoints on fixed held-out positions");
  cmd->add_option("checkpoints", args->checkpoints, "Checkpoint files (trained or merged)")->required();
  cmd->add_option("--val", args->val, "Validation text (default: Persuasion from the Austen cache)");
  cmd->add_option("--positions", args->positions, "Maximum positions scored (whole context windows from the start)")
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print JSON instead of a table");
  cmd->add_option("--threads", args->threads, "CPU threads")->capture_default_str();
  cmd->footer(
      "Example:\n"
      "  wsm eval runs/a/step_00002000.h5 merged/last-1-sqrt.h5 --json\n"
      "Every file is scored on the same windows of the validation text, so raw and merged checkpoints\n"
      "compare directly. Files without model metadata borrow it from another file on the line.");
  cmd->callback([args] { run_eval(*args); });
}

}  // namespace wsm::tools
