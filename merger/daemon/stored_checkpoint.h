#pragma once
// A checkpoint held by the daemon's window: immutable once complete, shared by the window and by
// any emission reading it, so dropping or spilling never pulls bytes from under a running merge.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "merger/engine/model_metadata.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/formats/part_layout.h"

namespace wsm::merger {

// One tensor's bytes as they arrived: the payload frames of its chunks, in offset order, kept as
// received instead of copied into one buffer, so ingest makes no pass over the bytes but the
// checksum. Each piece's owner (a ZeroMQ frame, or a small vector) keeps its bytes alive.
struct TensorBytes {
  struct Piece {
    std::uint64_t offset = 0;
    std::span<const std::byte> bytes;
    std::shared_ptr<const void> owner;
  };
  std::vector<Piece> pieces;  // contiguous: each starts where the previous one ends

  std::uint64_t size() const { return pieces.empty() ? 0 : pieces.back().offset + pieces.back().bytes.size(); }
  // Appends bytes owned by `owner` after the last piece.
  void append(std::span<const std::byte> bytes, std::shared_ptr<const void> owner);
  // Appends a copy of `bytes`, held by the piece itself.
  void append_copy(std::span<const std::byte> bytes);
  // Copies [offset, offset + dst.size()) out of the pieces; throws wsm::Error past the end.
  void read(std::uint64_t offset, std::span<std::byte> dst) const;
};

// A tensor held in one piece of its own (tests, and checkpoints built in memory).
TensorBytes tensor_bytes(std::vector<std::byte> bytes);

// A file in the store, deleted when the window has dropped it and no reader (a queued or running
// output) still holds it; kept otherwise, so a restart finds it.
// Written in the background (store_writer.h): the file exists once `persisted`.
struct FileLease {
  std::filesystem::path path;
  std::atomic<bool> dropped{false};
  std::atomic<bool> persisted{false};
  explicit FileLease(std::filesystem::path p) : path(std::move(p)) {}
  ~FileLease();
};

struct StoredCheckpoint {
  std::string run_id;
  std::int64_t step = 0;
  std::int64_t tokens = 0;
  double lr = 0;
  std::vector<TensorInfo> tensors;
  std::vector<TensorBytes> data;    // one per tensor; empty when only on disk
  std::filesystem::path file;       // persisted copy in the store, empty when none
  std::shared_ptr<FileLease> lease; // of `file`
  // A sharded run: the node's ranks and their slices (tensors are named by slice entry); in the
  // metadata under kPartLayoutKey, so a --store file keeps it.
  std::shared_ptr<const PartLayout> part;
  // The run's model metadata (its Hello's; model_metadata.h), shared by its checkpoints; written
  // into its --store file, so a restart restores it. nullptr: none.
  std::shared_ptr<const ModelMetadata> model;

  bool in_memory() const { return !data.empty(); }
  std::uint64_t nbytes() const;
  CheckpointMeta meta() const;
};

// The same checkpoint without its RAM copy (it must have a file).
std::shared_ptr<const StoredCheckpoint> without_memory(const StoredCheckpoint& c);

// A CheckpointReader over a stored checkpoint (RAM copy, else its file), so the shared merge
// engine (merge_engine.h) reads the window like any checkpoint.
std::unique_ptr<CheckpointReader> open_stored(std::shared_ptr<const StoredCheckpoint> c);

// A store file truncated by another process while the daemon reads it reads as zeros past its
// new end (the daemon guards mapped reads rather than die of SIGBUS, mapped_file.h). Called
// after reading and before anything made from the reads is kept or published: throws, naming
// the files, when any of `readers`' files changed.
void check_stored_reads(std::span<const CheckpointReader* const> readers);

// Writes c (from RAM) to path atomically as HDF5, with step/tokens/lr/run_id metadata.
void persist(const StoredCheckpoint& c, const std::filesystem::path& path);
// Reads the metadata and manifest of a persisted checkpoint (no tensor bytes).
std::shared_ptr<const StoredCheckpoint> load_stored(const std::filesystem::path& path);

}  // namespace wsm::merger
