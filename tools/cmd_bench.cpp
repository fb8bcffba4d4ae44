// Placeholder until the bench command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm bench: not built yet"); });
}
}  // namespace wsm::tools
