#include "wsm/formats/checkpoint_name.h"

#include <charconv>
#include <cstdio>

#include "wsm/core/error.h"

namespace wsm {

std::string checkpoint_file_name(std::int64_t step, std::string_view extension) {
  if (step < 0) throw Error("checkpoint step " + std::to_string(step) + " is negative");
  char digits[32];
  std::snprintf(digits, sizeof digits, "step_%012lld", static_cast<long long>(step));
  return std::string(digits).append(extension);
}

std::optional<std::int64_t> step_from_file_name(const std::filesystem::path& path) {
  const std::string stem = path.stem().string();  // "step_00000600" (a directory: its whole name)
  constexpr std::string_view prefix = "step_";
  if (!stem.starts_with(prefix) || stem.size() == prefix.size()) return std::nullopt;
  std::int64_t step = 0;
  const char* first = stem.data() + prefix.size();
  const char* last = stem.data() + stem.size();
  const auto [end, ec] = std::from_chars(first, last, step);
  if (ec != std::errc() || end != last || step < 0) return std::nullopt;
  return step;
}

}  // namespace wsm
