#pragma once
// Each `wsm` subcommand lives in its own tools/cmd_<name>.cpp and registers itself here.
#include <CLI/CLI.hpp>
#include <string>

namespace wsm::tools {

void add_weights_command(CLI::App& app);   // cmd_weights.cpp   merge weights for a decay shape
void add_schedule_command(CLI::App& app);  // cmd_schedule.cpp  an LR curve, table or plot
void add_inspect_command(CLI::App& app);   // cmd_inspect.cpp   list a checkpoint's tensors and metadata
void add_convert_command(CLI::App& app);   // cmd_convert.cpp   HDF5 <-> safetensors (sharded), dtype casts
void add_merge_command(CLI::App& app);     // cmd_merge.cpp     offline merge of checkpoints on disk
void add_bench_command(CLI::App& app);     // cmd_bench.cpp     merge / ingest benchmarks
void add_bench_ingest_command(CLI::App& bench);  // cmd_bench_ingest.cpp  `wsm bench ingest` (called by cmd_bench.cpp)
void add_serve_command(CLI::App& app);     // cmd_serve.cpp     the merger daemon
void add_status_command(CLI::App& app);    // cmd_status.cpp    ask a running daemon for its status
void add_report_command(CLI::App& app);    // cmd_report.cpp    plot a daemon's scores against step
void add_train_command(CLI::App& app);     // cmd_train.cpp     train the GPT model
void add_eval_command(CLI::App& app);      // cmd_eval.cpp      validation loss of checkpoint files
// cmd_compare.cpp   WSM vs WSD study, or a sweep of merges scored by an evaluator; `command_line`
// (the command as typed) goes into its reports.
void add_compare_command(CLI::App& app, const std::string& command_line);

}  // namespace wsm::tools
