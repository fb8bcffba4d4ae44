// Placeholder until the train command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm train: not built yet"); });
}
}  // namespace wsm::tools
