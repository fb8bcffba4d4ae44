#pragma once
// The daemon's output format (`wsm serve --format h5|safetensors|hf --hf-template DIR`): every
// merged output as wsm's HDF5 (the default), one safetensors file, or a Hugging Face model
// directory (sharded safetensors + index + the template's config and tokenizer files,
// wsm/formats/hf_directory.h), the same writers `wsm merge` uses.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/hf_directory.h"

namespace wsm::merger {

struct EmissionJob;

enum class OutputFormat { h5, safetensors, hf };

// "h5", "safetensors", "hf"; nothing for anything else.
std::optional<OutputFormat> parse_output_format(std::string_view text);

struct OutputFormatOptions {
  OutputFormat format = OutputFormat::h5;
  std::filesystem::path hf_template;                 // hf: the model directory whose side files are copied
  std::uint64_t shard_bytes = kHfDefaultShardBytes;  // hf: shard size
};

// Throws wsm::Error when the options cannot work (hf without a model directory as template), at
// start-up rather than at the first output.
void check_output_format(const OutputFormatOptions& options);

// An output's path in `format`, from the planner's `.../step_<n>.h5`: `.safetensors`, or no extension
// (a Hugging Face directory).
std::filesystem::path output_path(const std::filesystem::path& h5_path, OutputFormat format);

// Rewrites every output path of a planned job for the format and records the format in the job.
// A sharded job's parts (job.part) stay HDF5 parts of their multipart set.
void apply_output_format(EmissionJob& job, const OutputFormatOptions& options);

// The writer for one output in this format (atomic, as create_checkpoint's).
std::unique_ptr<CheckpointWriter> create_output(const std::filesystem::path& path, const CheckpointMeta& meta,
                                                const std::vector<TensorInfo>& tensors,
                                                const OutputFormatOptions& options);

}  // namespace wsm::merger
