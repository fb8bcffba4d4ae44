// Placeholder until the convert command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm convert: not built yet"); });
}
}  // namespace wsm::tools
