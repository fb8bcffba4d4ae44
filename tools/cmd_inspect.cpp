// Placeholder until the inspect command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_inspect_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm inspect: not built yet"); });
}
}  // namespace wsm::tools
