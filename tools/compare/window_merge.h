#pragma once
// The WSM side of a comparison: every requested shape merged over one window of checkpoints, in one
// read of the inputs (wsm/merger/offline_merge.h), one output file per shape.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "wsm/schedules/decay.h"
#include "tools/compare/results.h"

namespace wsm::tools::compare {

// Merges `inputs` over their last `window` steps with each spec into out_dir/<stem>_w<window><ext>
// (ext ".h5", ".safetensors", or "" for a directory: a Hugging Face model directory when the newest
// input is one). Outputs already there are kept (a resumed comparison). Returns one unscored row
// per spec with its source steps and weights; none, with a warning, when the window holds a single
// checkpoint (that is the raw checkpoint, not a merge). `steps`: empty, or one per input, a step
// given explicitly (PATH@STEP, merger::OfflineMergeRequest::input_steps).
std::vector<ScoredModel> merge_window(const std::vector<std::filesystem::path>& inputs,
                                      const std::vector<MergeSpec>& specs, std::int64_t window,
                                      const std::filesystem::path& out_dir, const std::string& ext,
                                      const std::vector<std::optional<std::int64_t>>& steps = {});

// The shape's name as reports show it ("1-sqrt"), or the spec's text for tables and EMAs.
std::string shape_label(const MergeSpec& spec);

}  // namespace wsm::tools::compare
