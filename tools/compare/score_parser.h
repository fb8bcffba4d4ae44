#pragma once
// The score in an evaluation command's stdout (`wsm serve --eval-cmd`, `wsm compare --eval-cmd`).
// The caller hands over a bounded tail of the output (tools/compare/jobs.h keeps the last
// kOutputTailBytes); this scans it once, left to right, with no recursion and no regular
// expression, so any bytes (a 30,000-digit number, a megabyte without a newline) cost time linear
// in their length. Fuzzed by tests/protocol/fuzz_score_parser.cpp.
//
// A number (docs/readout.md, "What counts as the score"):
//   [sign] digits [. [digits]] [exponent]  |  [sign] . digits [exponent]   exponent: e|E [sign] digits
//   [sign] nan | inf | infinity            (any case, not part of a longer word: "banana" holds none)
// Digits may touch letters ("step_100" holds 100, "71.25%" holds 71.25). A number too large for a
// double reads as +-infinity, one too small as 0 (IEEE rounding, as strtod does).
#include <optional>
#include <string>
#include <string_view>

namespace wsm::tools::compare {

// The last number in `text`; with `json_key`, that key's number in the whole text parsed as one
// JSON object, else in the last line that parses as a JSON object holding it.
std::optional<double> parse_score(std::string_view text, const std::string& json_key);

}  // namespace wsm::tools::compare
