// libFuzzer target for the scoring-output parser (tools/compare/score_parser.h): what an
// `--eval-cmd` prints is untrusted. Any bytes must give a score or none, in time linear in their
// length, without a crash or sanitizer report; and the answer must not depend on what cannot be
// part of a number (a newline before the text, a space after it). The first byte picks the mode:
// odd, a JSON key ("acc"); even, the last number. Built by fuzz.cmake with clang++ -fsanitize=fuzzer.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "tools/compare/score_parser.h"

namespace {
bool same(const std::optional<double>& a, const std::optional<double>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || (std::isnan(*a) ? std::isnan(*b) : *a == *b);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string key = data[0] & 1 ? "acc" : "";
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto score = wsm::tools::compare::parse_score(text, key);
  if (key.empty()) {
    if (!same(score, wsm::tools::compare::parse_score("\n" + text, key))) std::abort();
    if (!same(score, wsm::tools::compare::parse_score(text + " ", key))) std::abort();
  }
  return 0;
}
