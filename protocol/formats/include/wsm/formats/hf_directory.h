#pragma once
// Hugging Face model directories: what a directory needs besides its weights to load with
// `from_pretrained` (config, generation config, tokenizer files, custom code), and the writer of
// such a directory: sharded safetensors `model-0000k-of-0000N.safetensors` of a size the caller
// gives, `model.safetensors.index.json` (metadata + weight_map) and those files copied from a
// template directory. Used by the offline merge (`wsm merge` with HF inputs) and the daemon
// (`wsm serve --format hf --hf-template DIR`).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
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

// A Hugging Face model directory written atomically at `dir` (the same writer as any sharded set,
// create_checkpoint with shard_bytes and hf_template).
std::unique_ptr<CheckpointWriter> create_hf_directory(const std::filesystem::path& dir, const CheckpointMeta& meta,
                                                      const std::vector<TensorInfo>& tensors,
                                                      const std::filesystem::path& hf_template,
                                                      std::uint64_t shard_bytes = kHfDefaultShardBytes);

}  // namespace wsm
