// `wsm`: one executable, git-style subcommands. Errors go to stderr with a non-zero exit code.
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "wsm/core/error.h"
#include "wsm/core/version.h"
#include "wsm/formats/hdf5_checkpoint.h"
#include "tools/commands.h"

namespace {
// The command as typed (shell-quoted where needed), recorded in the reports it makes.
std::string command_line(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool plain = !arg.empty() && arg.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,%@+") == std::string::npos;
    if (i) line += ' ';
    if (plain) {
      line += arg;
      continue;
    }
    line += '\'';
    for (char c : arg) line.append(c == '\'' ? "'\\''" : std::string(1, c));
    line += '\'';
  }
  return line;
}
}  // namespace

int main(int argc, char** argv) {
  // Logs go to stderr, so stdout carries only what a command prints as its result (--json).
  spdlog::set_default_logger(
      std::make_shared<spdlog::logger>("", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  CLI::App app{"wsm: Warmup-Stable and Merge. Decay-free LR schedules via checkpoint merging.", "wsm"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  app.set_version_flag("--version", std::string(wsm::wsm_version()));
  using namespace wsm::tools;
  add_weights_command(app);
  add_schedule_command(app);
  add_inspect_command(app);
  add_convert_command(app);
  add_merge_command(app);
  add_bench_command(app);
  add_serve_command(app);
  add_status_command(app);
  add_report_command(app);
#ifdef WSM_HAVE_TRAINER  // a build without the trainer (WSM_BUILD_TRAINER=OFF) has no model to train or score
  add_train_command(app);
  add_eval_command(app);
  add_compare_command(app, command_line(argc, argv));
#endif
  // Every HDF5 file a command opens (merge inputs, the daemon's stored checkpoints) is parsed by one
  // helper process, forked at the first and killed at exit, not by one fork per file (hdf5_checkpoint.h).
  const wsm::Hdf5HelperLease hdf5_helper = wsm::hold_hdf5_helper();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wsm: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
