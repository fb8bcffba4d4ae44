#include "wsm/schedules/text.h"

#include <charconv>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "wsm/core/error.h"

namespace wsm::text {

// fmt's "{}" is the shortest form that reads back exactly, written like Python's repr (0.0003, 1e-300).
std::string format_number(double v) { return fmt::format("{}", v); }

std::string format_number(std::int64_t v) { return std::to_string(v); }

double parse_double(std::string_view token, std::string_view what) {
  token = trim(token);
  if (!token.empty() && token.front() == '+') token.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
  if (ec != std::errc{} || end != token.data() + token.size() || token.empty() || !std::isfinite(v))
    throw Error(std::string(what) + ": '" + std::string(token) + "' is not a finite number");
  return v;
}

std::int64_t parse_int(std::string_view token, std::string_view what) {
  token = trim(token);
  if (!token.empty() && token.front() == '+') token.remove_prefix(1);
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
  if (ec == std::errc{} && end == token.data() + token.size() && !token.empty()) return v;
  // Accept integral values written like 2e4 or 1000.0, common for step counts.
  double d = 0;
  auto [dend, dec] = std::from_chars(token.data(), token.data() + token.size(), d);
  if (dec == std::errc{} && dend == token.data() + token.size() && !token.empty() && std::isfinite(d) &&
      d == std::floor(d) && std::fabs(d) < 9.0e18)
    return static_cast<std::int64_t>(d);
  throw Error(std::string(what) + ": '" + std::string(token) + "' is not an integer");
}

bool is_number(std::string_view token) {
  token = trim(token);
  if (!token.empty() && token.front() == '+') token.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
  return !token.empty() && ec == std::errc{} && end == token.data() + token.size();
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t pos = text.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace wsm::text
