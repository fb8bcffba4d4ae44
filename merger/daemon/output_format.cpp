#include "merger/daemon/output_format.h"

#include <spdlog/spdlog.h>

#include "merger/daemon/emission.h"
#include "wsm/core/error.h"
#include "wsm/formats/tensor_convert.h"

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
  if (!options.hf_template.empty()) check_hf_template(options.hf_template);
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

void write_in_format(const std::filesystem::path& in, const std::filesystem::path& out, const OutputFormatOptions& options) {
  ConvertOptions o;
  if (options.format == OutputFormat::hf) {
    o.write.hf_template = options.hf_template;
    o.write.shard_bytes = options.shard_bytes;
  }
  convert_checkpoint(in, out, o);
}

std::optional<std::string> sharded_format_problem(const OutputFormatOptions& options, const std::string& run_id) {
  if (options.format == OutputFormat::h5) return std::nullopt;
  return "run '" + run_id + "' is sharded (its ranks send slices), and this daemon was started with --format " +
         (options.format == OutputFormat::hf ? "hf" : "safetensors") +
         ": each daemon of a sharded job writes only its node's part of every output, as HDF5. Start `wsm serve` "
         "without --format for this job, then make a Hugging Face directory of any step with `wsm convert "
         "OUT/<run>/<label>/step_<N> hf-out/ --shard-size 5GB` (config.json from the run's hf.config; "
         "--hf-template DIR adds tokenizer files)";
}

std::unique_ptr<CheckpointWriter> create_output(const std::filesystem::path& path, const CheckpointMeta& meta,
                                                const std::vector<TensorInfo>& tensors,
                                                const OutputFormatOptions& options) {
  if (options.format == OutputFormat::hf) {
    if (options.hf_template.empty() && !meta.extra.contains(kHfConfigKey))
      spdlog::warn("{}: no --hf-template and the run sent no '{}' metadata: written without config.json, which "
                   "from_pretrained needs", path.string(), kHfConfigKey);
    return create_hf_directory(path, meta, tensors, options.hf_template, options.shard_bytes);
  }
  return create_checkpoint(path, meta, tensors);
}

}  // namespace wsm::merger
