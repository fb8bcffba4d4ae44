#pragma once
// Sharded safetensors sets, the Hugging Face way: a directory of *.safetensors shards plus
// `model.safetensors.index.json` = {"metadata": {"total_size": N, ...}, "weight_map": {tensor: shard}}.
// A directory (with or without an index) or the index file itself opens as one checkpoint.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

inline constexpr const char* kShardIndexName = "model.safetensors.index.json";

std::unique_ptr<CheckpointReader> open_sharded(const std::filesystem::path& path);

// Writes `dir` (through a temporary directory) as shards model-0000i-of-0000n.safetensors of at
// most `shard_bytes` each (a larger tensor gets a shard of its own; 0 = a single shard) plus the index.
std::unique_ptr<CheckpointWriter> create_sharded(const std::filesystem::path& dir, const CheckpointMeta& meta,
                                                 const std::vector<TensorInfo>& tensors, std::uint64_t shard_bytes);

// Tensors of each shard, in order, for a size bound (exposed for tests and `wsm inspect`).
std::vector<std::vector<TensorInfo>> plan_shards(const std::vector<TensorInfo>& tensors, std::uint64_t shard_bytes);

}  // namespace wsm
