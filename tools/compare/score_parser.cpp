#include "tools/compare/score_parser.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

namespace wsm::tools::compare {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

std::size_t digits_at(std::string_view s, std::size_t i) {
  std::size_t n = 0;
  while (i + n < s.size() && is_digit(s[i + n])) ++n;
  return n;
}

bool word_at(std::string_view s, std::size_t i, std::string_view word) {
  if (s.size() - i < word.size()) return false;
  for (std::size_t k = 0; k < word.size(); ++k)
    if (lower(s[i + k]) != word[k]) return false;
  return true;
}

// Length of the decimal number starting at s[i] (after any sign), 0 when none starts there.
std::size_t decimal_length(std::string_view s, std::size_t i) {
  std::size_t n = digits_at(s, i);
  if (i + n < s.size() && s[i + n] == '.') {
    const std::size_t fraction = digits_at(s, i + n + 1);
    if (n == 0 && fraction == 0) return 0;  // a lone '.'
    n += 1 + fraction;
  }
  if (n == 0) return 0;
  if (i + n < s.size() && (s[i + n] == 'e' || s[i + n] == 'E')) {
    std::size_t e = i + n + 1;
    if (e < s.size() && (s[e] == '+' || s[e] == '-')) ++e;
    if (const std::size_t exp = digits_at(s, e); exp > 0) n = e + exp - i;
  }
  return n;
}

// Length of nan/inf/infinity at s[i] standing as a word of its own, 0 when none.
std::size_t special_length(std::string_view s, std::size_t i) {
  std::size_t n = 0;
  if (word_at(s, i, "infinity")) n = 8;
  else if (word_at(s, i, "inf") || word_at(s, i, "nan")) n = 3;
  if (n == 0 || (i + n < s.size() && is_letter(s[i + n]))) return 0;
  return n;
}

double to_double(std::string_view token) {
  const std::string text(token);  // strtod wants a terminated string; the token is at most the tail
  return std::strtod(text.c_str(), nullptr);  // out of range: +-HUGE_VAL (infinity) or 0
}

std::optional<double> last_number(std::string_view s) {
  std::optional<std::string_view> last;
  for (std::size_t i = 0; i < s.size();) {
    const bool word_start = i == 0 || !is_letter(s[i - 1]);
    const std::size_t body = i + (s[i] == '+' || s[i] == '-');
    std::size_t n = body < s.size() ? decimal_length(s, body) : 0;
    if (n == 0 && word_start && body < s.size()) n = special_length(s, body);
    if (n == 0) {
      ++i;
      continue;
    }
    last = s.substr(i, body - i + n);
    i = body + n;  // every byte is looked at a bounded number of times: linear
  }
  if (!last) return std::nullopt;
  return to_double(*last);
}

std::optional<double> key_in(std::string_view text, const std::string& key) {
  const auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_object() && j.contains(key) && j.at(key).is_number()) return j.at(key).get<double>();
  return std::nullopt;
}

}  // namespace

std::optional<double> parse_score(std::string_view text, const std::string& json_key) {
  if (json_key.empty()) return last_number(text);
  if (auto v = key_in(text, json_key)) return v;
  // Lines from the last: each is parsed once, so the whole scan stays linear.
  std::size_t end = text.size();
  while (end > 0) {
    const std::size_t nl = text.rfind('\n', end - 1);
    const std::size_t begin = nl == std::string_view::npos ? 0 : nl + 1;
    if (begin < end)
      if (auto v = key_in(text.substr(begin, end - begin), json_key)) return v;
    if (nl == std::string_view::npos) break;
    end = nl;
  }
  return std::nullopt;
}

}  // namespace wsm::tools::compare
