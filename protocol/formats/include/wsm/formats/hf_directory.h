#pragma once
// Hugging Face model directories: what a directory needs besides its weights to load with
// `from_pretrained` (config, generation config, tokenizer files, custom code), and the writer of
// such a directory: sharded safetensors `model-0000k-of-0000N.safetensors` of a size the caller
// gives, `model.safetensors.index.json` (metadata + weight_map) and those files copied from a
// template directory. Used by the offline merge (`wsm merge` with HF inputs) and the daemon
// (`wsm serve --format hf --hf-template DIR`).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

// transformers' save_pretrained default (max_shard_size="5GB", decimal).
inline constexpr std::uint64_t kHfDefaultShardBytes = 5'000'000'000ull;

// A directory holding config.json: a model directory whose side files can be copied.
bool is_hf_model_dir(const std::filesystem::path& dir);

// The side files of a model directory, by name, sorted: config.json, generation_config.json,
// tokenizer and vocabulary files, chat templates, processor configs and custom *.py code. Weights,
// indexes and trainer state (optimizer, scheduler, RNG state) are not side files. A side file may
// be a symbolic link to a file inside the directory, or inside its Hugging Face hub repository
// (<repo>/snapshots/<rev>/ -> <repo>/blobs/); a link that loops, dangles or leads elsewhere throws
// wsm::Error naming it.
std::vector<std::string> hf_side_files(const std::filesystem::path& dir);

// Throws wsm::Error unless `dir` is a model directory whose side files can all be copied (names
// what is missing, or the link at fault).
void check_hf_template(const std::filesystem::path& dir);

// Copies hf_side_files(from) into `to` (an existing directory; fsync is the caller's, as part of the
// atomic directory): the bytes (not links), holes kept as holes. Throws wsm::Error naming the file
// that failed.
void copy_hf_side_files(const std::filesystem::path& from, const std::filesystem::path& to);

// The metadata key under which clients send a model's Hugging Face config.json as text
// (`MergerClient(metadata={"hf.config": model.config.to_json_string()})`).
inline constexpr const char* kHfConfigKey = "hf.config";

// transformers' name of a dtype ("float32", "bfloat16", "float16", "float64"); empty for others.
std::string_view hf_dtype_name(DType t);

// The dtype a model directory's config.json should name: that of most floating-point bytes.
std::optional<DType> dominant_float_dtype(const std::vector<TensorInfo>& tensors);

// Makes `dir` (a model directory being written) loadable with from_pretrained: the side files of
// `hf_template` when one is given, else a config.json from the metadata's kHfConfigKey when there
// is one; then config.json's "torch_dtype" and "dtype" set to the written dtype (transformers loads
// weights in the dtype the config names: a bf16 merge under a float32 config loads as float32).
// Returns false when `dir` ends up with no config.json.
bool write_hf_side_files(const std::filesystem::path& dir, const std::filesystem::path& hf_template,
                         const std::map<std::string, std::string>& metadata, const std::vector<TensorInfo>& tensors);

// A Hugging Face model directory written atomically at `dir` (the same writer as any sharded set,
// create_checkpoint with shard_bytes and hf_template). Any sharded set whose metadata holds
// kHfConfigKey is one too (config.json from it when no template gives one): write_hf_side_files.
std::unique_ptr<CheckpointWriter> create_hf_directory(const std::filesystem::path& dir, const CheckpointMeta& meta,
                                                      const std::vector<TensorInfo>& tensors,
                                                      const std::filesystem::path& hf_template,
                                                      std::uint64_t shard_bytes = kHfDefaultShardBytes);

}  // namespace wsm
