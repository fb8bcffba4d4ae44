// Placeholder until the eval command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm eval: not built yet"); });
}
}  // namespace wsm::tools
