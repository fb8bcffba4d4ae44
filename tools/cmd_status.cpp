// Placeholder until the status command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_status_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("status", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm status: not built yet"); });
}
}  // namespace wsm::tools
