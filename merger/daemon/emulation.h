#pragma once
// One decay the daemon emulates: a merge spec over a window of steps or tokens, written SPEC@WINDOW.
//   --emulate 1-sqrt@800 linear@2000 'cosine,floor=0.1@50Mt' 'ema:alpha=0.2@1000' 'weights=0.2,0.8@300'
// SPEC is a merge spec (wsm/schedules/decay.h: ',' separates its options, ':' only in "ema:alpha=");
// '@' appears once and only before the window; several items in one value are separated by ';'.
// WINDOW is a step count, or a token count with the suffix "t" (optional K/M/G/B multiplier:
// "50Mt" = 50,000,000 tokens): wsm/schedules/window.h, the syntax every command shares. See
// docs/protocol.md.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "wsm/schedules/decay.h"
#include "wsm/schedules/window.h"

namespace wsm::merger {

struct Emulation {
  MergeSpec spec;
  std::int64_t window = 0;
  Axis axis = Axis::steps;
  std::string label;  // wsm::file_name_safe, e.g. "1-sqrt_w800", "cosine_floor_0.1_w50000000t"
};

Emulation make_emulation(const MergeSpec& spec, Window window);
// One --emulate value: "SPEC@WINDOW[;SPEC@WINDOW...]". A value without any '@' is read in the old,
// ambiguous form ("SHAPE:WINDOW,SHAPE:WINDOW", the window after each item's last ':'), with a
// warning, so scripts written for it keep working. Throws wsm::Error naming the bad item.
std::vector<Emulation> parse_emulations(std::string_view text);

}  // namespace wsm::merger
