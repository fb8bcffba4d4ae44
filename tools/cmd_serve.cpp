// Placeholder until the serve command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm serve: not built yet"); });
}
}  // namespace wsm::tools
