#include "merger/daemon/output_format.h"

#include "merger/daemon/emission.h"
#include "wsm/core/error.h"

namespace wsm::merger {

std::optional<OutputFormat> parse_output_format(std::string_view text) {
  if (text == "h5") return OutputFormat::h5;
  if (text == "safetensors") return OutputFormat::safetensors;
  if (text == "hf") return OutputFormat::hf;
  return std::nullopt;
}

void check_output_format(const OutputFormatOptions& options) {
  if (options.format != OutputFormat::hf) {
    if (!options.hf_template.empty()) throw Error("--hf-template is used with --format hf only");
    return;
  }
  if (options.hf_template.empty())
    throw Error("--format hf needs --hf-template DIR: the model directory whose config.json, "
                "generation_config.json and tokenizer files go into every output");
  check_hf_template(options.hf_template);
}

std::filesystem::path output_path(const std::filesystem::path& h5_path, OutputFormat format) {
  std::filesystem::path p = h5_path;
  switch (format) {
    case OutputFormat::h5: return p;
    case OutputFormat::safetensors: return p.replace_extension(".safetensors");
    case OutputFormat::hf: return p.replace_extension();
  }
  return p;
}

void apply_output_format(EmissionJob& job, const OutputFormatOptions& options) {
  if (job.part) return;  // a sharded job's part belongs to a multipart set (multipart_checkpoint.h): HDF5
  job.output = options;
  for (auto& out : job.outputs) out.path = output_path(out.path, options.format);
}

std::unique_ptr<CheckpointWriter> create_output(const std::filesystem::path& path, const CheckpointMeta& meta,
                                                const std::vector<TensorInfo>& tensors,
                                                const OutputFormatOptions& options) {
  if (options.format == OutputFormat::hf)
    return create_hf_directory(path, meta, tensors, options.hf_template, options.shard_bytes);
  return create_checkpoint(path, meta, tensors);
}

}  // namespace wsm::merger
