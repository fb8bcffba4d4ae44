#pragma once
// What the daemon knows per run while the run has a session or checkpoints in the window: its
// manifest (single-client runs), its model metadata, with CURVE its owner key, and the last step
// committed (for emission_due), with the RAM the manifests and metadata take, counted against the
// memory budget. The rules: a run's first Hello fixes its owner and metadata (check_owner,
// check_metadata); a run nothing uses any more is forgotten (forget_if_unused).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "merger/daemon/checkpoint_assembler.h"
#include "merger/engine/model_metadata.h"

namespace wsm::merger {

// What a manifest takes in RAM, about (a Hello may list millions of tiny tensors).
std::uint64_t manifest_footprint(const Manifest& m);

class RunRegistry {
 public:
  // With CURVE, a run belongs to the key that said Hello for it first (since this start): another
  // key gets BAD_REQUEST. An empty user id (no CURVE) is nobody's.
  void check_owner(const std::string& run, const std::string& user_id) const;
  // Like the manifest, the run's first Hello fixes its metadata (or, before one, the newest
  // checkpoint in the window restored from --store: window_metadata); throws MANIFEST_MISMATCH.
  void check_metadata(const std::string& run, const ModelMetadata* sent,
                      std::optional<const ModelMetadata*> window_metadata) const;

  // The run's manifest (nullptr: unknown, or a sharded run, whose ranks each have their own).
  std::shared_ptr<const Manifest> manifest(const std::string& run) const;
  bool has_metadata(const std::string& run) const { return metadata_.contains(run); }
  std::shared_ptr<const ModelMetadata> metadata(const std::string& run) const;  // nullptr: none
  std::size_t manifests() const { return manifests_.size(); }

  // A Hello's manifest, metadata and owner: the first one given stays the run's, and its RAM is
  // counted. adopt_manifest returns the run's manifest (shared by its sessions).
  std::shared_ptr<const Manifest> adopt_manifest(const std::string& run, std::shared_ptr<const Manifest> manifest);
  void adopt_metadata(const std::string& run, std::shared_ptr<const ModelMetadata> metadata);
  void adopt_owner(const std::string& run, const std::string& user_id);

  // RAM held by the runs' manifests and metadata, and what sessions add (a sharded rank's slices).
  std::uint64_t bytes() const { return bytes_; }
  void charge(std::uint64_t bytes) { bytes_ += bytes; }
  void release(std::uint64_t bytes) { bytes_ -= bytes; }

  // The last step committed (-1: none), and advancing it; returns the one before.
  std::int64_t last_step(const std::string& run) const;
  std::int64_t advance(const std::string& run, std::int64_t step);

  // What still uses a run: an open session, checkpoints in the window.
  struct Use {
    bool sessions = false;
    bool window = false;
  };
  // A run with neither keeps nothing here (its manifest and owner would otherwise stay for good,
  // one per run id a peer ever named): the next key to say Hello starts it afresh, as after a
  // restart. The last step stays (it is the window's history, not the run's sessions').
  void forget_if_unused(const std::string& run, Use use);

 private:
  std::map<std::string, std::shared_ptr<const Manifest>> manifests_;
  std::map<std::string, std::shared_ptr<const ModelMetadata>> metadata_;  // nullptr: a Hello without
  std::map<std::string, std::string> owners_;                             // CURVE on
  std::map<std::string, std::int64_t> last_step_;
  std::uint64_t bytes_ = 0;
};

}  // namespace wsm::merger
