// `wsm inspect PATH [--json] [--check]`: a checkpoint's tensors, totals, metadata and format,
// read from headers only (--check also streams the data to count NaN/Inf).
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint.h"
#include "wsm/core/error.h"
#include "wsm/formats/tensor_convert.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace wsm::tools {

namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
  bool check = false;
};

nlohmann::json meta_json(const CheckpointMeta& m) {
  nlohmann::json j;
  j["step"] = m.step ? nlohmann::json(*m.step) : nlohmann::json(nullptr);
  j["tokens"] = m.tokens ? nlohmann::json(*m.tokens) : nlohmann::json(nullptr);
  j["lr"] = m.lr ? nlohmann::json(*m.lr) : nlohmann::json(nullptr);
  j["run_id"] = m.run_id;
  j["extra"] = m.extra;
  return j;
}

void run_inspect(const InspectArgs& a) {
  auto reader = open_checkpoint(a.path);
  std::uint64_t total_bytes = 0, total_elems = 0, bad_tensors = 0;
  nlohmann::json tensors = nlohmann::json::array();
  std::vector<FiniteScan> scans;
  for (const auto& t : reader->tensors()) {
    total_bytes += t.nbytes();
    total_elems += t.numel();
    nlohmann::json jt = {{"name", t.name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"bytes", t.nbytes()}};
    if (a.check) {
      const FiniteScan s = scan_tensor(*reader, t);
      jt["nan"] = s.nan;
      jt["inf"] = s.inf;
      bad_tensors += !s.clean();
      scans.push_back(s);
    }
    tensors.push_back(std::move(jt));
  }
  const auto& m = reader->meta();
  if (a.json) {
    nlohmann::json out = {{"path", reader->path().string()}, {"format", reader->format()},
                          {"tensors", std::move(tensors)},  {"total_bytes", total_bytes},
                          {"total_elements", total_elems},  {"metadata", meta_json(m)}};
    if (a.check) out["tensors_with_nonfinite"] = bad_tensors;
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%s\n", fmt::format("{}: {} checkpoint, {} tensors, {} elements, {} ({} bytes)",
                                    reader->path().string(), reader->format(), reader->tensors().size(), total_elems,
                                    human_bytes(total_bytes), total_bytes)
                            .c_str());
    std::printf("metadata:\n");
    std::printf("  step:   %s\n", m.step ? std::to_string(*m.step).c_str() : "-");
    std::printf("  tokens: %s\n", m.tokens ? std::to_string(*m.tokens).c_str() : "-");
    std::printf("  lr:     %s\n", m.lr ? fmt::format("{}", *m.lr).c_str() : "-");
    std::printf("  run_id: %s\n", m.run_id.empty() ? "-" : m.run_id.c_str());
    for (const auto& [k, v] : m.extra) std::printf("  %s = %s\n", k.c_str(), v.c_str());
    std::size_t width = 4;
    for (const auto& t : reader->tensors()) width = std::max(width, t.name.size());
    std::printf("%s\n", fmt::format("{:<{}}  {:<5} {:<20} {:>14}{}", "name", width, "dtype", "shape", "bytes",
                                    a.check ? "  nan/inf" : "")
                            .c_str());
    for (std::size_t i = 0; i < reader->tensors().size(); ++i) {
      const auto& t = reader->tensors()[i];
      std::string extra;
      if (a.check) extra = scans[i].clean() ? "  ok" : fmt::format("  {} NaN, {} Inf", scans[i].nan, scans[i].inf);
      std::printf("%s\n", fmt::format("{:<{}}  {:<5} {:<20} {:>14}{}", t.name, width, dtype_name(t.dtype),
                                      fmt::format("[{}]", fmt::join(t.shape, ", ")), t.nbytes(), extra)
                              .c_str());
    }
  }
  if (a.check && bad_tensors > 0)
    throw Error(a.path + ": " + std::to_string(bad_tensors) + " tensor(s) hold NaN or Inf");
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand("inspect", "List a checkpoint's tensors (name, dtype, shape, bytes), totals, "
                                            "metadata and format, without loading the data");
  cmd->add_option("path", args->path, "Checkpoint: *.h5/*.hdf5, *.safetensors, *.safetensors.index.json or a "
                                      "directory of shards")
      ->required();
  cmd->add_flag("--json", args->json, "Print one JSON object: tensors [{name, dtype, shape, bytes}], metadata, ...");
  cmd->add_flag("--check", args->check,
                "Also stream the data and count NaN/Inf per tensor; exit non-zero when any is found");
  cmd->footer(
      "Examples:\n"
      "  wsm inspect ckpt/step-12000.h5\n"
      "  wsm inspect Llama-3-8B/ --json | jq '.tensors[] | .name'\n"
      "  wsm inspect model.safetensors.index.json --check");
  cmd->callback([args] { run_inspect(*args); });
}

}  // namespace wsm::tools
