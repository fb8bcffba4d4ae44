#pragma once
// A model's own metadata (its config, vocabulary, a Hugging Face config.json as text, ...) as
// opposed to what wsm records about how a file was made (wsm.* keys: provenance, layouts). Merged
// outputs carry the newest source checkpoint's model metadata, so they are usable on their own:
// `wsm merge` takes it from its newest input file, the daemon from the run's Hello
// (merger/daemon/hello_metadata.h) (kept on every
// checkpoint of the window and in its --store files, so a restart keeps it). docs/protocol.md,
// "Model metadata".
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace wsm::merger {

using ModelMetadata = std::map<std::string, std::string>;

// A Hello's metadata, keys and values together, is at most this many bytes, in at most this many
// keys (each an HDF5 attribute: tens of thousands make every --store write and read take minutes).
inline constexpr std::uint64_t kMaxModelMetadataBytes = 1ull << 20;
inline constexpr std::size_t kMaxModelMetadataKeys = 256;
// A key is an HDF5 attribute's name, kept in the file's object header (64 KiB messages): a longer
// key could be acknowledged and then never stored. Values go to the global heap (any size).
inline constexpr std::size_t kMaxModelMetadataKeyBytes = 4096;

// The model's entries of a checkpoint's metadata: every key but wsm.*, the Hugging Face index's
// "total_size" and safetensors' "format" (properties of the file, rewritten by every writer).
ModelMetadata model_metadata(const std::map<std::string, std::string>& extra);

// Keys plus values, in bytes.
std::uint64_t metadata_bytes(const ModelMetadata& metadata);

// Keys the model's metadata may not use: wsm.* (the merger's provenance), "total_size", "format",
// empty.
bool reserved_metadata_key(const std::string& key);

// A key as errors show it: cut to 64 bytes.
std::string shown_metadata_key(const std::string& key);

// How `sent` differs from `held` (the first key, in order, that one lacks or that differs), or
// nullopt when they are equal. nullptr is no metadata.
std::optional<std::string> metadata_difference(const ModelMetadata* held, const ModelMetadata* sent);

}  // namespace wsm::merger
