// Placeholder until the merge benchmark lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "(not built yet)");
  bench->require_subcommand(1);
  add_bench_ingest_command(*bench);
}
}  // namespace wsm::tools
