// `wsm merge`: offline merge of checkpoint files, one output per decay shape (wsm/merger/offline_merge.h).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "wsm/merger/offline_merge.h"
#include "wsm/core/error.h"
#include "wsm/formats/trainer_folder.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace wsm::tools {
namespace {
namespace fs = std::filesystem;

struct MergeArgs {
  std::vector<std::string> shapes;
  std::optional<double> floor;
  std::vector<double> weights;
  std::optional<std::int64_t> window_steps, window_tokens;
  std::optional<DType> dtype;
  kernels::BackendKind backend = kernels::BackendKind::automatic;
  std::string accumulate = "f32";
  std::optional<double> chunk_mb;  // default: merger::default_chunk_elements(backend)
  std::uint64_t shard_size = 0;
  bool dry_run = false;
  bool json = false;
  std::string out;
  std::vector<std::string> inputs;
};

// Outputs take the inputs' form: HDF5 files, safetensors files, or (for shard or Hugging Face
// model directories, or with --shard-size) directories.
std::string output_extension(const std::vector<std::string>& inputs, std::uint64_t shard_size) {
  if (shard_size > 0 || fs::is_directory(inputs.front())) return "";
  const auto ext = fs::path(inputs.front()).extension();
  return ext == ".h5" || ext == ".hdf5" ? ".h5" : ".safetensors";
}

// Under MPI: each rank's share and rate, and the wall time of the whole merge (rank 0's figures
// above are its own share).
void print_rank_stats(const merger::OfflineResult& result) {
  std::uint64_t moved = 0;
  for (std::size_t r = 0; r < result.ranks.size(); ++r) {
    const auto& s = result.ranks[r];
    moved += s.bytes_read + s.bytes_written;
    std::printf("  rank %zu: read %s, wrote %s in %.2f s (%s/s)\n", r, human_bytes(double(s.bytes_read)).c_str(),
                human_bytes(double(s.bytes_written)).c_str(), s.seconds,
                human_bytes(double(s.bytes_read + s.bytes_written) / std::max(s.seconds, 1e-9)).c_str());
  }
  std::printf("%zu ranks: %s moved in %.2f s wall (%s/s), planning to publication\n", result.ranks.size(),
              human_bytes(double(moved)).c_str(), result.seconds,
              human_bytes(double(moved) / std::max(result.seconds, 1e-9)).c_str());
}

// The plan as --json prints it: what plan.describe() says, as data.
nlohmann::json plan_json(const merger::OfflineMergeRequest& req, const merger::OfflinePlan& plan) {
  using nlohmann::json;
  json inputs = json::array();
  for (std::size_t i = 0; i < plan.inputs.size(); ++i) {
    const auto& in = plan.inputs[i];
    inputs.push_back({{"path", in.path.string()},
                      {"step", in.step ? json(*in.step) : json(nullptr)},
                      {"step_source", in.step ? json(in.step_source) : json(nullptr)},
                      {"tokens", in.tokens ? json(*in.tokens) : json(nullptr)},
                      {"bytes", in.bytes},
                      {"used", std::find(plan.used.begin(), plan.used.end(), i) != plan.used.end()}});
  }
  json outputs = json::array();
  for (std::size_t o = 0; o < plan.weights.size(); ++o) {
    json sources = json::array();
    for (std::size_t u = 0; u < plan.used.size(); ++u) {
      const auto& in = plan.inputs[plan.used[u]];
      sources.push_back({{"path", in.path.string()},
                         {"step", in.step ? json(*in.step) : json(nullptr)},
                         {"weight", plan.weights[o][u]}});
    }
    outputs.push_back({{"path", req.outputs[o].string()},
                       {"spec", req.specs[o].to_string()},
                       {"sampling", plan.sampling[o]},
                       {"weights", plan.weights[o]},
                       {"sources", sources}});
  }
  return {{"inputs", inputs},
          {"outputs", outputs},
          {"tensors", plan.merge.output_tensors.size()},
          {"copied_tensors", std::count(plan.merge.copied.begin(), plan.merge.copied.end(), true)},
          {"dtype", req.dtype ? std::string(dtype_name(*req.dtype)) : std::string("as the newest input")},
          {"read_bytes", plan.merge.bytes_read},
          {"write_bytes", plan.merge.bytes_written_per_output * plan.weights.size()},
          {"buffer_bytes", plan.buffer_bytes}};
}

// The request the arguments describe: specs, inputs (PATH@STEP), outputs (file, pattern or folder).
merger::OfflineMergeRequest request_from(const MergeArgs& a) {
  merger::OfflineMergeRequest req;
  for (const auto& text : a.shapes)
    for (MergeSpec spec : parse_merge_spec_list(text)) {
      if (a.floor && !spec.table() && spec.floor() == 0.0) spec.set_floor(*a.floor);
      req.specs.push_back(spec);
    }
  if (!a.weights.empty()) {
    req.specs.push_back(TableRule{TableRule::Kind::merge_weights, a.weights});
  }
  if (req.specs.empty()) {
    req.specs.push_back(ShapeRule{DecayShape::linear, a.floor.value_or(0.0)});
  }
  for (const auto& text : a.inputs) {
    const CheckpointArg in = parse_checkpoint_arg(text);
    req.inputs.push_back(in.path);
    req.input_steps.push_back(in.step);
  }
  if (req.specs.size() == 1) {
    req.outputs.emplace_back(a.out);
  } else if (a.out.find("{shape}") != std::string::npos) {
    for (const auto& spec : req.specs) {
      std::string p = a.out;
      p.replace(p.find("{shape}"), 7, merger::output_stem(spec));
      req.outputs.emplace_back(p);
    }
  } else {
    if (fs::exists(a.out) && !fs::is_directory(a.out))
      throw Error("wsm merge: several shapes need --out to be a directory or a pattern with {shape}; " + a.out +
                  " is a file");
    for (const auto& spec : req.specs)
      req.outputs.push_back(fs::path(a.out) / (merger::output_stem(spec) + output_extension(a.inputs, a.shard_size)));
  }
  req.window_steps = a.window_steps;
  req.window_tokens = a.window_tokens;
  req.dtype = a.dtype;
  req.backend = a.backend;
  req.shard_bytes = a.shard_size;
  req.accumulate_f64 = a.accumulate == "f64";
  req.chunk_elements = a.chunk_mb ? std::max<std::uint64_t>(1, std::uint64_t(*a.chunk_mb * double(1 << 20) / 4))
                                  : merger::default_chunk_elements(req.backend);
  return req;
}

// Progress on a terminal only: bytes done, rate, ETA, refreshed a few times a second.
std::function<void(std::uint64_t, std::uint64_t)> terminal_progress() {
  if (!isatty(STDERR_FILENO)) return {};
  const auto start = std::chrono::steady_clock::now();
  return [start, last = start](std::uint64_t done, std::uint64_t total) mutable {
    const auto now = std::chrono::steady_clock::now();
    if (done < total && now - last < std::chrono::milliseconds(250)) return;
    last = now;
    const double s = std::chrono::duration<double>(now - start).count();
    const double rate = s > 0 ? double(done) / s : 0;
    const double eta = rate > 0 ? double(total - done) / rate : 0;
    std::fprintf(stderr, "\r  written %s / %s  %s/s  ETA %.0f s   ", human_bytes(double(done)).c_str(),
                 human_bytes(double(total)).c_str(), human_bytes(rate).c_str(), eta);
    if (done >= total) std::fputc('\n', stderr);
  };
}

// Rank 0's report: the JSON object (--json) or the lines a person reads.
void report_result(const MergeArgs& a, const merger::OfflineMergeRequest& req, const merger::OfflineResult& result,
                   const rusage& before, const rusage& ru) {
  const auto& st = result.stats;
  if (a.json) {
    nlohmann::json done = {{"bytes_read", st.bytes_read},     {"bytes_written", st.bytes_written},
                           {"seconds", st.seconds},           {"backend", result.backend},
                           {"buffer_bytes", st.buffer_bytes}, {"peak_rss_bytes", std::uint64_t(ru.ru_maxrss) * 1024}};
    if (result.ranks.size() > 1) {  // under MPI the figures above are rank 0's share
      done["wall_seconds"] = result.seconds;
      done["ranks"] = nlohmann::json::array();
      for (const auto& r : result.ranks)
        done["ranks"].push_back(
            {{"bytes_read", r.bytes_read}, {"bytes_written", r.bytes_written}, {"seconds", r.seconds}});
    }
    std::cout << nlohmann::json{{"dry_run", false}, {"plan", plan_json(req, result.plan)}, {"result", done}}.dump(2)
              << "\n";
    return;
  }
  for (std::size_t o = 0; o < req.outputs.size(); ++o)
    std::cout << "wrote " << req.outputs[o].string() << "  (" << req.specs[o].to_string() << ")\n";
  std::printf("%sread %s, wrote %s in %.2f s (%s/s) on the %s backend; merge buffers %s, peak RSS %s (%s at start)\n",
              result.ranks.size() > 1 ? "rank 0's share: " : "", human_bytes(double(st.bytes_read)).c_str(),
              human_bytes(double(st.bytes_written)).c_str(), st.seconds,
              human_bytes(double(st.bytes_read + st.bytes_written) / std::max(st.seconds, 1e-9)).c_str(),
              result.backend.c_str(), human_bytes(double(st.buffer_bytes)).c_str(),
              human_bytes(double(ru.ru_maxrss) * 1024.0).c_str(),
              human_bytes(double(before.ru_maxrss) * 1024.0).c_str());
  if (result.ranks.size() > 1) print_rank_stats(result);
}

void run_merge(const MergeArgs& a) {
  const merger::OfflineMergeRequest req = request_from(a);
  const auto group = merger::make_rank_group();  // MPI's world under mpirun/srun, else one rank
  const bool root = group->rank() == 0;
  if (group->size() > 1) {  // say which rank speaks; only rank 0 tells progress (info)
    spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [rank " + std::to_string(group->rank()) + "] [%^%l%$] %v");
    if (!root) spdlog::set_level(spdlog::level::warn);
  }
  if (a.dry_run) {
    const auto plan = merger::plan_offline_merge(req);
    if (!root) return;
    if (a.json)
      std::cout << nlohmann::json{{"dry_run", true}, {"plan", plan_json(req, plan)}}.dump(2) << "\n";
    else
      std::cout << "dry run: nothing is written\n" << plan.describe(req);
    return;
  }

  std::function<void(std::uint64_t, std::uint64_t)> progress;
  if (root) progress = terminal_progress();
  // RSS before the merge (mostly the shared libraries, cuBLAS among them), to show what the merge adds.
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  merger::OfflineResult result;
  try {
    result = merger::run_offline_merge(req, *group, progress);
  } catch (const merger::GroupFailure& e) {
    if (group->size() == 1) throw;
    // Every rank stopped at the same step and rank 0 has removed its temporaries. Each says why,
    // then all leave together: a launcher ends the whole job at the first non-zero exit, which
    // would otherwise cut off a rank that has not spoken yet.
    std::fprintf(stderr, "wsm: error: %s\n", e.what());
    std::fflush(stderr);
    group->all_gather("");
    throw CLI::RuntimeError(1);  // exit status 1, nothing more printed
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  if (root) report_result(a, req, result, before, ru);
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto args = std::make_shared<MergeArgs>();
  auto* cmd = app.add_subcommand("merge", "Merge checkpoints offline: one output per decay shape");
  cmd->add_option("--shape", args->shapes,
                   "Decay shape(s), comma separated: linear (default, uniform mean), cosine, 1-sqrt, inverse-sqrt, "
                   "exponential, ema:alpha=A, wma; key=value options attach to the shape before them");
  cmd->add_option("--floor", args->floor, "Minimum LR fraction r: w = r + (1-r) f(t)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--weights", args->weights, "Explicit merge weights c_0..c_k, oldest first (normalised to sum 1)")
      ->delimiter(',');
  auto* ws = add_window_option(*cmd, "--window-steps", args->window_steps, Axis::steps,
                               "Merge the checkpoints in (newest - N, newest] steps, shape sampled at their steps");
  auto* wt = add_window_option(*cmd, "--window-tokens", args->window_tokens, Axis::tokens,
                               "Same, over recorded token counts (50M, 50Mt or 50000000)");
  ws->excludes(wt);
  add_float_dtype_option(*cmd, args->dtype,
                         "Output dtype of float tensors (f32, bf16, f16, f64); default: as the newest");
  add_enum_option(*cmd, "--backend", args->backend, kernels::kBackendKindNames,
                  "Merge backend: cpu, cuda, cublas or auto (default auto)");
  cmd->add_option("--accumulate", args->accumulate, "Accumulator precision")
      ->check(CLI::IsMember({"f32", "f64"}))
      ->capture_default_str();
  cmd->add_option("--chunk-mb", args->chunk_mb,
                  "Chunk size in MiB of f32 per tensor piece (bounds memory); default 1 on the CPU, 64 on a GPU")
      ->check(CLI::PositiveNumber);
  add_size_option(
      *cmd, "--shard-size", args->shard_size,
      "Directory outputs: shards model-0000k-of-0000N.safetensors of at most this size (5GB = 5e9 "
      "bytes, 5GiB = 5 * 2^30); default one shard, or 5GB when the inputs are Hugging Face model directories");
  cmd->add_flag("--dry-run", args->dry_run, "Print the plan (inputs, weights, bytes, memory) and write nothing");
  cmd->add_flag("--json", args->json, "Print the plan and the result as one JSON object on stdout (logs stay on stderr)");
  cmd->add_option("--out", args->out,
                  "Output file; with several shapes a directory, or a pattern containing {shape}")
      ->required();
  cmd->add_option("inputs", args->inputs,
                  "Input checkpoints (.h5, .safetensors, sharded dirs, Hugging Face checkpoint-N folders), ordered by "
                  "step (metadata, trainer_state.json or the name); PATH@STEP gives a step explicitly")
      ->required();
  cmd->footer(
      "Examples:\n"
      "  wsm merge --out merged.safetensors ckpt/step-*.safetensors\n"
      "  wsm merge --shape linear,1-sqrt,cosine --floor 0.05 --window-steps 4000 --dtype bf16 \\\n"
      "            --out 'merged-{shape}.h5' run/*.h5\n"
      "  wsm merge --weights 0.1,0.2,0.3,0.4 --dry-run --out m.h5 a.h5 b.h5 c.h5 d.h5\n"
      "  mpirun -np 64 wsm merge --shape 1-sqrt --shard-size 5GB --out merged/ hf/checkpoint-*   # Hugging Face dirs\n"
      "  wsm merge --shape 1-sqrt --window-steps 1500 --json --out merged.safetensors hf-run/checkpoint-*\n"
      "  wsm merge --shape cosine --out m.safetensors a.safetensors@100 b.safetensors@200 c.safetensors@300\n"
      "\n" +
      std::string(merger::mpi_available()
                      ? "Under mpirun or srun the ranks split the bytes and write the outputs in place; rank 0 "
                        "publishes them once all are done (all or none)."
                      : "This build has no MPI: wsm merge runs as one process (install libopenmpi-dev and rebuild "
                        "for mpirun)."));
  cmd->callback([args] { run_merge(*args); });
}

}  // namespace wsm::tools
