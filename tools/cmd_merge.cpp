// Placeholder until the merge command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_merge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm merge: not built yet"); });
}
}  // namespace wsm::tools
