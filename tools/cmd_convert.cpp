// `wsm convert IN OUT [--dtype f32|f16|bf16|f64]`: between HDF5, safetensors and sharded
// safetensors, streaming tensor by tensor in bounded chunks. A directory output is a Hugging Face
// model directory when IN carries the model's config ("hf.config", e.g. a sharded run's step
// directory) or --hf-template names one: config.json (dtype as written) and tokenizer files.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "wsm/formats/checkpoint.h"
#include "wsm/core/error.h"
#include "wsm/formats/tensor_convert.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace wsm::tools {

namespace {

struct ConvertArgs {
  std::string in, out, hf_template;
  std::optional<DType> dtype;
  std::uint64_t shard_size = 0, hdf5_chunk = 0, buffer = 64ull << 20;
  int compression = 0;
  bool strict = false;
};

void run_convert(const ConvertArgs& a) {
  ConvertOptions o;
  o.dtype = a.dtype;
  o.chunk_bytes = a.buffer;
  o.fail_on_nonfinite = a.strict;
  o.write.shard_bytes = a.shard_size;
  o.write.compression = a.compression;
  o.write.chunk_bytes = a.hdf5_chunk;
  const bool directory = a.shard_size > 0 || std::filesystem::path(a.out).extension().empty();
  if (!a.hf_template.empty() && !directory)
    throw Error("--hf-template writes a Hugging Face model directory: give OUT as a directory, not " + a.out);
  o.write.hf_template = a.hf_template;  // and a directory output with hf.config metadata gets its config.json
  const ConvertReport r = convert_checkpoint(a.in, a.out, o);
  std::printf("%s\n", fmt::format("{} ({}) -> {}: {} tensors, {} -> {} bytes{}", a.in, r.in_format, a.out, r.tensors,
                                  r.bytes_in, r.bytes_out,
                                  r.issues.empty() ? "" : fmt::format("; {} tensor(s) with NaN/Inf or overflow (see warnings)",
                                                                      r.issues.size()))
                          .c_str());
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  auto* cmd = app.add_subcommand("convert", "Convert a checkpoint between HDF5, safetensors and sharded safetensors "
                                            "(format from OUT's extension), optionally casting float tensors");
  cmd->add_option("in", args->in, "Input checkpoint (file, index or shard directory)")->required();
  cmd->add_option("out", args->out,
                  "Output: *.h5/*.hdf5, *.safetensors, or a directory (sharded safetensors + index)")
      ->required();
  add_float_dtype_option(*cmd, args->dtype,
                         "Cast float tensors to this type (integer and bool tensors are never cast)");
  add_size_option(*cmd, "--shard-size", args->shard_size,
                  "Write sharded safetensors with shards of at most this size (5GB = 5e9 bytes, 5GiB = 5 * 2^30)");
  cmd->add_option("--hf-template", args->hf_template,
                  "Directory output: copy this Hugging Face model directory's config and tokenizer files in (else "
                  "config.json comes from IN's 'hf.config' metadata when it has one)");
  cmd->add_option("--compression", args->compression, "HDF5 output: deflate level 0..9 (values never change)")
      ->check(CLI::Range(0, 9));
  add_size_option(*cmd, "--hdf5-chunk", args->hdf5_chunk, "HDF5 output: chunk size (default 1MiB when compressing)");
  add_size_option(*cmd, "--buffer", args->buffer, "Most tensor bytes held in memory at once (default 64MiB)");
  cmd->add_flag("--strict", args->strict, "Fail on NaN/Inf in the input instead of warning");
  cmd->footer(
      "Examples:\n"
      "  wsm convert step-12000.h5 step-12000.safetensors\n"
      "  wsm convert Llama-3-8B/ llama.h5 --compression 4\n"
      "  wsm convert merged.h5 merged-bf16/ --dtype bf16 --shard-size 5GB\n"
      "  wsm convert merged/run/1-sqrt_w800/step_00002000 hf/ --shard-size 5GB --hf-template tokenizer-dir/   # a sharded run's step");
  cmd->callback([args] {
    if (args->buffer == 0) throw Error("--buffer must be positive");
    run_convert(*args);
  });
}

}  // namespace wsm::tools
