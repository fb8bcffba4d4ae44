#pragma once
// A merge window: how far back a merge reaches, in steps or in tokens, and the one text form every
// command reads it in (`--emulate`, `--compare-merge`, `--window-steps`, `--window-tokens`):
//   "800"          800 steps
//   "50Mt", "50M"  50,000,000 tokens (suffix t; K/M/G/B multipliers: 1e3, 1e6, 1e9, 1e9; "50M" only
//                  where the option already says tokens)
// and a merge spec with its window, SPEC@WINDOW ("1-sqrt@800", "cosine,floor=0.1@50Mt"): '@' appears
// once, only before the window, since ',' and ':' belong to the spec (wsm/schedules/decay.h).
#include <cstdint>
#include <string>
#include <string_view>

#include "wsm/schedules/decay.h"

namespace wsm {

enum class Axis { steps, tokens };

struct Window {
  std::int64_t value = 0;
  Axis axis = Axis::steps;
};

std::string_view axis_name(Axis a);  // "steps" or "tokens"
// "800", "50Mt", "1.5Gt"; throws wsm::Error naming the text. With default_axis tokens, a count
// without the suffix t ("50M", "50000000") is tokens too.
Window parse_window(std::string_view text, Axis default_axis = Axis::steps);
std::string window_to_string(const Window& w);  // "800", "50000000t": parse_window reads it back

struct SpecWindow {
  MergeSpec spec;
  Window window;
};
// "SPEC@WINDOW"; throws wsm::Error naming option and the item.
SpecWindow parse_spec_at_window(std::string_view item, std::string_view option);

}  // namespace wsm
