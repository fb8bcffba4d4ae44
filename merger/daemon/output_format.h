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
                                                     // (empty: config.json from the "hf.config" metadata)
  std::uint64_t shard_bytes = kHfDefaultShardBytes;  // hf: shard size
};

// Throws wsm::Error when the options cannot work (a template that is not a model directory), at
// start-up rather than at the first output. --format hf needs no template when clients send their
// config as metadata ("hf.config"): config.json is then written from it.
void check_output_format(const OutputFormatOptions& options);

// An output's path in `format`, from the planner's `.../step_<n>.h5`: `.safetensors`, or no extension
// (a Hugging Face directory).
std::filesystem::path output_path(const std::filesystem::path& h5_path, OutputFormat format);

// Rewrites every output path of a planned job for the format and records the format in the job.
// A sharded job's parts (job.part) stay HDF5 parts of their multipart set.
void apply_output_format(EmissionJob& job, const OutputFormatOptions& options);

// Writes the checkpoint at `in` (any form wsm reads) to `out` in this format, values unchanged
// (raw checkpoints scored beside the outputs, output_evaluator.h).
void write_in_format(const std::filesystem::path& in, const std::filesystem::path& out, const OutputFormatOptions& options);

// Why a sharded run (ranks declaring slices) cannot be written in this format, or nothing: each
// daemon writes only its node's part of every output, as HDF5 parts of one multi-part set.
std::optional<std::string> sharded_format_problem(const OutputFormatOptions& options, const std::string& run_id);

// The writer for one output in this format (atomic, as create_checkpoint's).
std::unique_ptr<CheckpointWriter> create_output(const std::filesystem::path& path, const CheckpointMeta& meta,
                                                const std::vector<TensorInfo>& tensors,
                                                const OutputFormatOptions& options);

}  // namespace wsm::merger
