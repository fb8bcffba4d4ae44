#include "wsm/schedules/window.h"

#include <cctype>
#include <cmath>

#include "wsm/core/error.h"
#include "wsm/schedules/text.h"

namespace wsm {

std::string_view axis_name(Axis a) { return a == Axis::steps ? "steps" : "tokens"; }

Window parse_window(std::string_view text, Axis default_axis) {
  std::string s(text::trim(text));
  const std::string original = s;
  const auto fail = [&] {
    return Error("window '" + original + "': expected a step count (800) or tokens with suffix t (50Mt)");
  };
  Window w;
  w.axis = default_axis;
  if (!s.empty() && (s.back() == 't' || s.back() == 'T')) {
    w.axis = Axis::tokens;
    s.pop_back();
  }
  double mult = 1;
  if (!s.empty() && w.axis == Axis::tokens) {
    switch (std::toupper(static_cast<unsigned char>(s.back()))) {
      case 'K': mult = 1e3; break;
      case 'M': mult = 1e6; break;
      case 'G':
      case 'B': mult = 1e9; break;
      default: break;
    }
    if (mult != 1) s.pop_back();
  }
  if (s.empty()) throw fail();
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw fail();
  }
  if (used != s.size() || !(v * mult >= 1) || v * mult > 9e18) throw fail();
  if (w.axis == Axis::steps && v != std::floor(v)) throw fail();
  w.value = static_cast<std::int64_t>(std::llround(v * mult));
  return w;
}

std::string window_to_string(const Window& w) { return std::to_string(w.value) + (w.axis == Axis::tokens ? "t" : ""); }

SpecWindow parse_spec_at_window(std::string_view item, std::string_view option) {
  const std::string s(text::trim(item));
  const auto at = s.find('@');
  if (at == std::string::npos || s.find('@', at + 1) != std::string::npos)
    throw Error(std::string(option) + " '" + s + "': expected SPEC@WINDOW, e.g. 1-sqrt@800 or 'cosine,floor=0.1@50Mt'");
  return {parse_merge_spec(s.substr(0, at)), parse_window(s.substr(at + 1))};
}

}  // namespace wsm
