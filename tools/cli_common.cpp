#include "tools/cli_common.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "wsm/core/error.h"

namespace wsm::tools {

namespace {
// The multiplier of a unit ("", "B", "k", "KB", "Mi", "GiB", ...); 0 for an unknown one.
double unit_multiplier(std::string unit) {
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  bool iec = false;
  if (!unit.empty() && unit.back() == 'i') {
    iec = true;
    unit.pop_back();
  }
  if (unit.empty()) return iec ? 0 : 1;
  if (unit.size() != 1) return 0;
  const char* const prefixes = "KMGT";
  const char* at = std::strchr(prefixes, std::toupper(static_cast<unsigned char>(unit[0])));
  if (at == nullptr || *at == '\0') return 0;
  return std::pow(iec ? 1024.0 : 1000.0, static_cast<double>(at - prefixes + 1));
}
}  // namespace

std::uint64_t parse_size(std::string_view text, std::string_view option) {
  const std::string s(text);
  const auto fail = [&](const std::string& why) {
    return Error(std::string(option) + " '" + s + "': " + why +
                 " (a size: bytes, or with a unit, e.g. 5GB = 5e9, 5GiB = 5 * 2^30, 512M, 64KiB)");
  };
  std::size_t used = 0;
  double v = 0;
  try {
    if (s.empty() || !(std::isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.')) throw fail("expected a number");
    v = std::stod(s, &used);
  } catch (const std::invalid_argument&) {
    throw fail("expected a number");
  } catch (const std::out_of_range&) {
    throw fail("out of range");
  }
  std::string unit = s.substr(used);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  const double mult = unit_multiplier(unit);
  if (mult == 0) throw fail("unknown unit '" + unit + "'");
  const double bytes = std::round(v * mult);
  if (!(bytes >= 0) || bytes >= 18446744073709551616.0) throw fail("out of range");
  return static_cast<std::uint64_t>(bytes);
}

CLI::Option* add_size_option(CLI::App& cmd, const std::string& name, std::uint64_t& target,
                             const std::string& description) {
  // The text becomes its byte count before CLI11 reads it as an integer; a bad size is a usage error.
  const CLI::Validator to_bytes(
      [name](std::string& value) -> std::string {
        try {
          value = std::to_string(parse_size(value, name));
          return {};
        } catch (const Error& e) {
          return e.what();
        }
      },
      "SIZE");
  return cmd.add_option(name, target, description)->transform(to_bytes);
}

CLI::Option* add_window_option(CLI::App& cmd, const std::string& name, std::optional<std::int64_t>& target, Axis axis,
                               const std::string& description) {
  const CLI::Validator to_count(
      [name, axis](std::string& value) -> std::string {
        try {
          const Window w = parse_window(value, axis);
          if (w.axis != axis)
            return name + " '" + value + "': a window in " + std::string(axis_name(w.axis)) + ", this option takes " +
                   std::string(axis_name(axis));
          value = std::to_string(w.value);
          return {};
        } catch (const Error& e) {
          return name + ": " + e.what();
        }
      },
      axis == Axis::steps ? "STEPS" : "TOKENS");
  return cmd.add_option(name, target, description)->transform(to_count);
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[40];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
  return buf;
}

CLI::Option* add_float_dtype_option(CLI::App& cmd, std::optional<DType>& target, const std::string& description) {
  auto* option = cmd.add_option_function<std::string>(
      "--dtype",
      [&target](const std::string& name) {
        const auto t = parse_dtype(name);
        if (!t || !is_float(*t))
          throw CLI::ValidationError("--dtype", "'" + name + "' is not a float dtype (f32, f16, bf16 or f64)");
        target = *t;
      },
      description);
  return option->type_name("DTYPE");
}

}  // namespace wsm::tools
