#pragma once
// One output of the daemon as index.json lists it (docs/protocol.md, "The daemon"): what was merged
// (run, label, spec, window, step, the sources and their weights), where it lies, and what later
// parts add (the index's relative "file", the evaluator's "eval"). Built by output_record()
// (emission_runner.h) when an output is written, or rebuilt from an output's provenance when the
// index is reconciled; JSON only at the edges (index.json, OutputsReply records) through
// to_json/from_json, which keep keys this version does not know, so a record read and written back
// is unchanged.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace wsm::merger {

struct OutputRecord {
  // A part of a sharded run's output: "path" is then the step directory (the whole multi-part
  // checkpoint once every node's part is there).
  struct Part {
    std::string file;  // "part": this node's part file, in that directory
    int world_size = 1;
    std::vector<int> ranks;
    bool operator==(const Part&) const = default;
  };
  // How a running sum (running_sum.h) made the output.
  struct RunningSum {
    bool recomputed = false;
    std::int64_t updates_since_recompute = 0;
    std::uint64_t read = 0;  // checkpoints read for this update
    bool operator==(const RunningSum&) const = default;
  };

  // Keys every record has had since index.json's first version.
  std::string run_id, label, spec;
  std::int64_t window = 0;
  std::string axis;  // "steps" or "tokens"
  std::int64_t step = 0, tokens = 0;
  std::string path;
  std::vector<std::int64_t> sources, source_tokens;
  std::vector<double> weights;
  std::string sampling;
  // Keys some records lack.
  std::optional<std::string> dtype;         // the output's, or "as-input"
  std::optional<std::string> method;        // "full-merge", or the running sum's model
  std::optional<std::uint64_t> request_id;  // 0: a periodic output; absent: recovered
  std::optional<bool> recovered;            // listed on a restart, from the file's provenance
  std::optional<std::string> file;          // the path relative to the index's directory
  std::optional<Part> part;
  std::optional<RunningSum> running_sum;
  std::optional<nlohmann::json> eval;                 // the evaluator's verdict (output_evaluator.h eval_json)
  nlohmann::json unknown = nlohmann::json::object();  // keys of other versions, kept as read

  bool operator==(const OutputRecord&) const = default;
};

void to_json(nlohmann::json& j, const OutputRecord& r);
// Throws wsm::Error when `j` is not an object. A known key whose value is not of the type this
// version writes is kept as read (in `unknown`), never dropped.
void from_json(const nlohmann::json& j, OutputRecord& r);

}  // namespace wsm::merger
