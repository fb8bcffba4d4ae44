// `wsm train`: train the GPT model warmup-stable, checkpointing every K steps (and streaming to a
// merger daemon with --merger). The work is in trainer/train.cpp.
#include <map>
#include <string>

#include "wsm/core/error.h"
#include "tools/commands.h"
#include "tools/corpus/austen.h"
#include "wsm/trainer/train.h"

namespace wsm::tools {

void add_train_command(CLI::App& app) {
  auto opts = std::make_shared<trainer::TrainOptions>();
  std::string out;
  auto* cmd = app.add_subcommand("train", "Train the GPT language model (constant LR after warmup by default)");
  cmd->add_option("--preset", opts->preset, "Model size: tiny, small, medium, large")->capture_default_str();
  cmd->add_option("--steps", opts->steps, "Total optimizer steps")->capture_default_str();
  cmd->add_option("--out", opts->out, "Output directory for step_<N>.h5 and state.h5")->required();
  cmd->add_option("--schedule", opts->schedule,
                  "LR schedule, e.g. 'warmup=100,stable,peak=2e-3' (default: the preset's warmup+stable), "
                  "'wsd:warmup=100,decay=400,shape=1-sqrt,peak=2e-3', 'cosine:warmup=100,floor=0.1,peak=2e-3'");
  cmd->add_option("--merger", opts->merger, "Stream every checkpoint to a merger daemon at this endpoint");
  cmd->add_option("--run-id", opts->run_id, "Run name sent to the merger (default: the --out folder's name)");
  cmd->add_option("--merger-policy", opts->merger_policy,
                  "While the merger is away: drop-oldest (training never waits; checkpoints fail after 30 s), "
                  "wait (keep all; block when 1 GiB is queued) or fail-fast")
      ->transform(CLI::CheckedTransformer(std::map<std::string, OutagePolicy>{{"drop-oldest", OutagePolicy::drop_oldest},
                                                                             {"wait", OutagePolicy::wait},
                                                                             {"fail-fast", OutagePolicy::fail_fast}}))
      ->default_str("drop-oldest");
  cmd->add_option("--every", opts->every, "Checkpoint and log every K steps")->capture_default_str();
  cmd->add_option("--seed", opts->seed, "Seed for initial weights and batches")->capture_default_str();
  cmd->add_option("--data", opts->data, "Training text file (default: Austen's five novels)");
  cmd->add_option("--val", opts->val, "Validation text file (default: Persuasion)");
  cmd->add_option("--device", opts->device, "cpu or cuda")
      ->transform(CLI::CheckedTransformer(std::map<std::string, trainer::Device>{
          {"cpu", trainer::Device::cpu}, {"cuda", trainer::Device::cuda}}))
      ->default_str("cpu");
  cmd->add_flag("--resume", opts->resume, "Continue from <out>/state.h5 (bit-exact)");
  cmd->add_option("--from-state", opts->from_state,
                  "Branch: start from a full state another run kept (its state_<N>.h5) and go on under --schedule")
      ->check(CLI::ExistingFile);
  cmd->add_option("--keep-states", opts->keep_states, "Also keep the full state at these steps as <out>/state_<N>.h5")
      ->delimiter(',');
  cmd->add_option("--threads", opts->threads, "CPU threads (OpenMP + OpenBLAS)")->capture_default_str();
  cmd->add_option("--batch-size", opts->batch_size, "Sequences per step (default: the preset's)");
  cmd->add_option("--clip", opts->clip, "Global gradient-norm clip, 0 = off")->capture_default_str();
  cmd->add_option("--weight-decay", opts->adamw.weight_decay, "AdamW weight decay (matrices only)")->capture_default_str();
  cmd->add_option("--eval-positions", opts->eval_positions, "Validation positions scored at the end, 0 = skip")
      ->capture_default_str();
  cmd->add_flag("--no-checkpoints{false}", opts->save_checkpoints, "Do not write step_<N>.h5 files (state.h5 still)");
  cmd->footer(
      "Example:\n"
      "  wsm train --preset small --steps 2000 --every 100 --out runs/a --seed 1\n"
      "  wsm train --preset small --steps 2000 --out runs/a --merger tcp://127.0.0.1:5555\n"
      "  wsm train --preset small --steps 4000 --out runs/a --resume\n"
      "  wsm train --preset small --steps 2000 --out runs/a --keep-states 1600\n"
      "  wsm train --preset small --steps 2000 --out runs/a-wsd --from-state runs/a/state_00001600.h5 \\\n"
      "            --schedule wsd:warmup=100,decay=400,shape=1-sqrt,peak=2e-3   # == a WSD run from scratch\n"
      "The Austen corpus is cached by `python3 tools/fetch-austen.py` (run automatically when missing).");
  cmd->callback([opts] {
    if (opts->data.empty()) opts->corpus_root = austen_root();  // fetches the corpus when missing
    trainer::train(*opts);
  });
}

}  // namespace wsm::tools
