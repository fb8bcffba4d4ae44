// Placeholder until the weights command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_weights_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("weights", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm weights: not built yet"); });
}
}  // namespace wsm::tools
