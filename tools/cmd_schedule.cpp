// Placeholder until the schedule command lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_schedule_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("schedule", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm schedule: not built yet"); });
}
}  // namespace wsm::tools
