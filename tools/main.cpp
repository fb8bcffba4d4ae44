// `wsm`: one executable, git-style subcommands. Errors go to stderr with a non-zero exit code.
#include <cstdio>
#include <exception>

#include "protocol/error.h"
#include "protocol/version.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
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
  add_train_command(app);
  add_eval_command(app);
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
