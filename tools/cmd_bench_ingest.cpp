// Placeholder until the ingest benchmark lands.
#include "protocol/error.h"
#include "tools/commands.h"

namespace wsm::tools {
void add_bench_ingest_command(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("ingest", "(not built yet)");
  cmd->callback([] { throw wsm::Error("wsm bench ingest: not built yet"); });
}
}  // namespace wsm::tools
