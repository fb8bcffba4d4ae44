// `wsm serve`: the merger daemon. Training jobs stream checkpoints to it (wsm/client/client.h, the
// Python wsm_client); every N steps it writes one merged checkpoint per emulated decay.
#include <atomic>
#include <csignal>
#include <cmath>
#include <string>

#include <spdlog/spdlog.h>

#include "merger/daemon/freed_memory.h"
#include "merger/daemon/server.h"
#include "wsm/core/error.h"
#include "tools/cli_common.h"
#include "tools/commands.h"
#ifdef WSM_HAVE_TRAINER
#include "tools/compare/scoring.h"
#endif

namespace wsm::tools {
namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop.store(true); }

struct ServeArgs {
  std::string listen = "tcp://127.0.0.1:5555";
  std::string out;
  std::vector<std::string> emulate;
  std::int64_t every = 0;
  std::string store;
  std::uint64_t memory_budget = 8ull << 30;
  std::optional<DType> dtype;
  kernels::BackendKind backend = kernels::BackendKind::cpu;
  std::string curve_secret, curve_allow;
  std::uint32_t credit = 16;
  double partial_timeout_s = 30;
  std::string log_level = "info";
  std::string running_sums = "on";
  int recompute_every = 64;
  std::uint64_t write_backlog = 1ull << 30;
  // The stable-phase readout (merger/daemon/output_evaluator.h).
  std::string eval_cmd, score_key, eval_val, eval_config;
  bool eval_builtin = false, eval_raw = true, publish_best = false, higher_is_better = false;
  std::int64_t eval_positions = 131072;
  int eval_threads = 1;
  double eval_timeout_s = 3600;
  std::string index_name = "index.json";
  std::string format = "h5";
  std::string hf_template;
};

// --eval-cmd / --eval-builtin: how every output is scored, or nothing (no evaluator).
merger::EvalOptions eval_options(const ServeArgs& a) {
  merger::EvalOptions eval;
  if (a.eval_cmd.empty() && !a.eval_builtin) {
    if (a.publish_best) throw Error("--publish-best needs scores: give --eval-cmd or --eval-builtin");
    return eval;
  }
  if (!a.eval_cmd.empty() && a.eval_builtin) throw Error("give --eval-cmd or --eval-builtin, not both");
  if (a.eval_threads < 1) throw Error("--eval-threads must be >= 1");
  if (!(a.eval_timeout_s >= 0)) throw Error("--eval-timeout must be >= 0 seconds (0: no limit)");
#ifndef WSM_HAVE_TRAINER
  throw Error("--eval-cmd/--eval-builtin: this wsm was built without the trainer (WSM_BUILD_TRAINER=OFF)");
#else
  compare::Evaluator ev;
  ev.command = a.eval_cmd;
  ev.json_key = a.score_key;
  ev.val = a.eval_val;
  ev.positions = a.eval_positions;
  ev.timeout_s = a.eval_timeout_s;
  auto scorer = std::make_shared<const compare::ModelScorer>(ev, std::filesystem::path(a.out) / "eval-logs", a.eval_config);
  eval.score = [scorer](const std::filesystem::path& p) {
    const auto o = (*scorer)(p);
    return merger::ScoreOutcome{o.score, o.error};
  };
  eval.cancel = [scorer] { scorer->cancel_running(); };
  eval.evaluator = ev.describe();
  eval.threads = a.eval_threads;
  eval.raw = a.eval_raw;
  eval.order = a.higher_is_better ? merger::ScoreOrder::higher_is_better : merger::ScoreOrder::lower_is_better;
  eval.publish_best = a.publish_best;
  return eval;
#endif
}

void run_serve(const ServeArgs& a) {
  auto level = spdlog::level::from_str(a.log_level);
  spdlog::set_level(level);
  merger::ServerOptions o;
  o.listen = a.listen;
  o.curve_secret_key_file = a.curve_secret;
  o.curve_allow_file = a.curve_allow;
  o.backend = a.backend;
  for (const auto& value : a.emulate)
    for (auto& e : merger::parse_emulations(value)) o.core.emulations.push_back(std::move(e));
  if (a.every <= 0) throw Error("--every must be a positive number of steps");
  o.core.every = a.every;
  o.core.out_dir = a.out;
  if (a.index_name.empty() || a.index_name.find('/') != std::string::npos || a.index_name.front() == '.')
    throw Error("--index '" + a.index_name + "': expected a file name in --out (no '/', not hidden)");
  o.runner.index_name = a.index_name;
  o.core.output.format = *merger::parse_output_format(a.format);  // CLI11 checked the name
  o.core.output.hf_template = a.hf_template;
  merger::check_output_format(o.core.output);
  o.core.dtype = a.dtype;
  o.core.store.store_dir = a.store;
  o.core.store.memory_budget = a.memory_budget;
  o.core.store.write_backlog = a.write_backlog;
  o.core.credit = a.credit;
  if (a.running_sums != "on" && a.running_sums != "off")
    throw Error("--running-sums '" + a.running_sums + "': expected on or off");
  o.core.running_sums = a.running_sums == "on";
  if (a.recompute_every < 1) throw Error("--running-sums-recompute must be >= 1");
  o.sums.recompute_every = a.recompute_every;
  o.core.partial_timeout = std::chrono::milliseconds(static_cast<long long>(a.partial_timeout_s * 1000));
  o.eval = eval_options(a);

  merger::keep_freed_memory(o.core.store.memory_budget);  // before the server's threads start
  merger::Server server(o);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  server.run(g_stop);
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "Merger daemon: receive checkpoints over ZeroMQ, publish merged models");
  cmd->add_option("--listen", args->listen, "ZeroMQ endpoint to bind (loopback unless CURVE is configured)")
      ->capture_default_str();
  cmd->add_option("--out", args->out, "Directory for merged checkpoints and index.json")->required();
  cmd->add_option("--emulate", args->emulate,
                  "SPEC@WINDOW ... (one or more): a merge spec over a window in steps, or tokens with suffix "
                  "t, e.g. 1-sqrt@800 'cosine,floor=0.1@50Mt' 'ema:alpha=0.2@1000'")
      ->required();
  cmd->add_option("--every", args->every, "Write outputs every N steps, once each window is covered")->required();
  cmd->add_option("--store", args->store, "Directory for the window on disk (spill, restart)");
  add_size_option(*cmd, "--memory-budget", args->memory_budget,
                  "RAM for the window, e.g. 16GiB or 16GB (default 8GiB)");
  add_float_dtype_option(*cmd, args->dtype, "Output dtype of float tensors (f32, f16, bf16, f64); default: as input");
  add_enum_option(*cmd, "--backend", args->backend, kernels::kBackendKindNames,
                  "Merge backend: cpu, cuda, cublas or auto (default cpu)");
  cmd->add_option("--format", args->format,
                  "Output format: h5 (wsm's HDF5), safetensors (one file), hf (a Hugging Face model directory: "
                  "sharded safetensors, index, and the config/tokenizer files of --hf-template)")
      ->check(CLI::IsMember({"h5", "safetensors", "hf"}))
      ->capture_default_str();
  cmd->add_option("--hf-template", args->hf_template,
                  "--format hf: the Hugging Face model directory whose config.json, generation_config.json and "
                  "tokenizer files are copied into every output (default: config.json from the run's 'hf.config' "
                  "metadata, which wsm_client.hf sends)");
  cmd->add_option("--curve-secret-key", args->curve_secret, "Server CURVE secret key file (Z85)");
  cmd->add_option("--curve-allow", args->curve_allow, "Allowed client CURVE public keys (Z85, one per line)");
  cmd->add_option("--credit", args->credit, "Chunks in flight per client")->capture_default_str();
  cmd->add_option("--partial-timeout", args->partial_timeout_s,
                  "Seconds of sender silence before a partial checkpoint is discarded")
      ->capture_default_str();
  cmd->add_option("--running-sums", args->running_sums,
                  "on: uniform (linear, even spacing) and EMA emulations are kept as f64 running sums "
                  "updated per checkpoint; off: every output re-merges its window")
      ->capture_default_str();
  cmd->add_option("--running-sums-recompute", args->recompute_every,
                  "Recompute each running sum from the window after this many incremental updates (bounds f64 drift)")
      ->capture_default_str();
  add_size_option(
      *cmd, "--write-backlog", args->write_backlog,
      "Bytes received but not yet written to --store past which ingest waits (credit withheld; default 1GiB)");
  cmd->add_option("--index", args->index_name,
                  "File name of the output index in --out; daemons of one sharded job sharing --out (one per node) "
                  "each give their own, e.g. index-node3.json")
      ->capture_default_str();
  cmd->add_option("--log-level", args->log_level, "trace, debug, info, warn, error")->capture_default_str();
  cmd->add_option("--eval-cmd", args->eval_cmd,
                  "Score every output in the background: a shell command with {path}; its last number on stdout "
                  "(or --score-key) in the last 64 KiB of stdout is the score, recorded in index.json and `wsm status`");
  cmd->add_flag("--eval-builtin", args->eval_builtin,
                "Score every output with wsm's own GPT evaluator (validation loss, as `wsm eval`)");
  cmd->add_option("--score-key", args->score_key, "Read the score from this key of a JSON object the command prints");
  cmd->add_option("--eval-val", args->eval_val, "--eval-builtin: validation text (default: the Austen corpus')");
  cmd->add_option("--eval-positions", args->eval_positions, "--eval-builtin: positions scored")->capture_default_str();
  cmd->add_option("--eval-config", args->eval_config,
                  "--eval-builtin: a checkpoint of the run (e.g. the trainer's) whose model config and vocabulary "
                  "serve outputs that carry none");
  cmd->add_option("--eval-threads", args->eval_threads, "Evaluations at once")->capture_default_str();
  cmd->add_option("--eval-timeout", args->eval_timeout_s,
                  "--eval-cmd: seconds a scoring command may run before its process group is killed and the output "
                  "recorded as failed (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--eval-raw", args->eval_raw,
                  "Also score the newest raw checkpoint at each emission (from --store, else a scratch copy; in "
                  "the --format of the outputs)")
      ->capture_default_str();
  cmd->add_flag("--higher-is-better", args->higher_is_better,
                "Scores rank highest first (accuracy) for index.json's best and --publish-best");
  cmd->add_flag("--publish-best", args->publish_best,
                "Keep OUT/<run>/best, a link swapped atomically, at the best-scoring output of the newest scored "
                "step: the model to ship now");
  cmd->footer(
      "Example:\n"
      "  wsm serve --listen tcp://127.0.0.1:5555 --out merged --emulate 1-sqrt@800 linear@2000 \\\n"
      "            --every 200 --store window --memory-budget 16G --dtype bf16\n"
      "  wsm serve --out merged --emulate linear@800 ema:alpha=0.2@1000 --every 100 --running-sums off\n"
      "  wsm serve --out merged --emulate 1-sqrt@800 --every 200 --format hf --hf-template hf-model/\n"
      "  wsm serve --out merged --emulate 1-sqrt@800 linear@800 --every 100 --format hf \\\n"
      "            --eval-cmd 'python tools/examples/hf_eval.py {path} --text heldout.txt' \\\n"
      "            --publish-best   # merged/<run>/best\n"
      "  wsm serve --out merged --emulate 1-sqrt@800 linear@800 --every 100 --eval-cmd 'python eval.py {path}'\n"
      "  wsm report merged                      # validation score vs step, raw and each emulation\n"
      "Outputs: merged/<run>/<shape>_w<window>/step_<step>.h5 (.safetensors, or a directory with --format hf)\n"
      "and merged/index.json; for a sharded job (ranks declaring slices), each node's part\n"
      "merged/<run>/<label>/step_<step>/part-rank<R>.h5.\n"
      "SIGINT/SIGTERM: stop accepting, finish the output being written, write acknowledged checkpoints to\n"
      "--store, kill a running --eval-cmd (its process group), exit.");
  cmd->callback([args] { run_serve(*args); });
}

}  // namespace wsm::tools
