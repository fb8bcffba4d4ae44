#pragma once
// How a merged checkpoint was made: one record, written into its metadata by the offline merge
// (`wsm merge`) and the daemon (`wsm serve`) alike, and read back by the daemon's index, `wsm
// inspect` and the Python client. Stored in CheckpointMeta::extra as "wsm.provenance" (one JSON
// object) plus "wsm.version"; docs/checkpoint-format.md lists the fields.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace wsm::merger {

// One merged input and its weight c_j.
struct ProvenanceSource {
  std::string path;                 // as given (offline) or the store file (daemon); may be empty
  std::optional<std::int64_t> step, tokens;
  double weight = 0;
  bool operator==(const ProvenanceSource&) const = default;
};

struct Provenance {
  std::string tool;                 // "wsm merge" or "wsm serve"
  std::string version;              // wsm's version
  std::string run_id;               // the daemon's run; the inputs' run id offline (may be empty)
  std::string spec;                 // MergeSpec::to_string(), e.g. "cosine,floor=0.1"
  std::string shape;                // MergeSpec::kind_name(): "linear", ..., "ema", "weights", "decay"
  double floor = 0;
  std::string sampling_rule;        // how weights were sampled, e.g. "w_i=f((p_i-p_0)/window)"
  std::optional<std::int64_t> window;  // in `axis` units; absent: every input (offline, no window)
  std::string axis;                 // "steps" or "tokens" (empty without a window)
  std::vector<ProvenanceSource> sources;  // oldest first
  std::string dtype;                // float tensors' output dtype, or "as-input"
  std::string accumulate;           // "f32" or "f64"
  std::string method;               // "full-merge" or "running-sum (uniform|ema)"
  std::vector<std::string> copied_from_newest;  // integer/bool tensors copied, not averaged
  bool operator==(const Provenance&) const = default;
};

// The metadata entries ("wsm.provenance", "wsm.version") for a checkpoint's CheckpointMeta::extra.
std::map<std::string, std::string> provenance_metadata(const Provenance& p);
// Reads them back; nullopt when the metadata has no provenance. Throws wsm::Error naming the field
// when the record is there but malformed.
std::optional<Provenance> provenance_from_metadata(const std::map<std::string, std::string>& extra);

}  // namespace wsm::merger
