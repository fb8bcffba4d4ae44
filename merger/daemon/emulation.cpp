#include "merger/daemon/emulation.h"

#include <spdlog/spdlog.h>

#include "wsm/core/error.h"
#include "wsm/core/file_name.h"
#include "wsm/schedules/text.h"

namespace wsm::merger {

namespace {
std::string trim(std::string_view s) { return std::string(text::trim(s)); }

bool starts_item(std::string_view token) {
  const std::string t = trim(token);
  if (t.starts_with("weights=") || t.starts_with("decay=")) return true;
  const auto end = t.find_first_of(":=");
  // An ambiguous name ("sqrt") starts an item too, so parse_merge_spec names the problem.
  return parse_decay_shape(t.substr(0, end)).has_value() || !ambiguous_shape_hint(t.substr(0, end)).empty();
}
}  // namespace

Emulation make_emulation(const MergeSpec& spec, Window window) {
  Emulation e;
  e.spec = spec;
  e.window = window.value;
  e.axis = window.axis;
  std::string label = file_name_safe(spec.to_string() + "_w" + window_to_string(window));
  if (label.size() > 120) label = label.substr(0, 120);
  e.label = label;
  return e;
}

namespace {
// The old form: items split at commas, a new item starting at a shape name or a table.
std::vector<Emulation> parse_legacy_emulations(std::string_view text) {
  std::vector<std::string> items;
  for (const std::string_view token : text::split(text, ',')) {
    if (items.empty() || starts_item(token))
      items.emplace_back(token);
    else
      items.back().append(1, ',').append(token);
  }
  std::vector<Emulation> out;
  for (const auto& item : items) {
    const auto colon = item.rfind(':');
    if (colon == std::string::npos)
      throw Error(std::string("--emulate item '").append(item).append("': expected SHAPE:WINDOW, e.g. 1-sqrt:800"));
    out.push_back(make_emulation(parse_merge_spec(item.substr(0, colon)), parse_window(item.substr(colon + 1))));
  }
  if (out.empty()) throw Error("--emulate: no emulation given");
  return out;
}
}  // namespace

std::vector<Emulation> parse_emulations(std::string_view text) {
  if (text.find('@') == std::string_view::npos && text.find(':') != std::string_view::npos) {
    auto out = parse_legacy_emulations(text);
    spdlog::warn("--emulate '{}': the SHAPE:WINDOW form is deprecated (',' and ':' are ambiguous in it); "
                 "write SPEC@WINDOW, e.g. 1-sqrt@800", text);
    return out;
  }
  std::vector<Emulation> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto semi = text.find(';', start);
    const std::string item = trim(text.substr(start, semi == std::string_view::npos ? std::string_view::npos
                                                                                     : semi - start));
    start = semi == std::string_view::npos ? text.size() + 1 : semi + 1;
    if (item.empty()) continue;
    const SpecWindow sw = parse_spec_at_window(item, "--emulate item");
    out.push_back(make_emulation(sw.spec, sw.window));
  }
  if (out.empty()) throw Error("--emulate: no emulation given");
  return out;
}

}  // namespace wsm::merger
