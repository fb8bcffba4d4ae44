#include "wsm/core/split.h"

namespace wsm {

std::vector<std::string> split_at(std::string_view text, char separator) {
  std::vector<std::string> items;
  for (std::size_t at = 0;;) {
    const std::size_t end = text.find(separator, at);
    items.emplace_back(text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at));
    if (end == std::string_view::npos) return items;
    at = end + 1;
  }
}

}  // namespace wsm
