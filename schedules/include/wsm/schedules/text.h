#pragma once
// Internal helpers for the short text forms of schedules and merge specs: exact number round trip
// (shortest representation that reads back to the same double) and comma splitting.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsm::text {

std::string format_number(double v);          // shortest form that parses back to exactly v
std::string format_number(std::int64_t v);
// Whole-token parses; throw wsm::Error naming `what` (e.g. "schedule 'x': warmup") on failure.
double parse_double(std::string_view token, std::string_view what);
std::int64_t parse_int(std::string_view token, std::string_view what);
bool is_number(std::string_view token);
std::vector<std::string_view> split(std::string_view text, char sep);  // keeps empty fields
std::string_view trim(std::string_view s);

}  // namespace wsm::text
