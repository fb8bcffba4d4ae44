#pragma once
// Splits command-line lists ("1,5,9", "800,1600") at a separator. Every item is kept, empty ones
// too ("a,,b" is three items, "" is one empty item), so each caller decides what an empty item means.
#include <string>
#include <string_view>
#include <vector>

namespace wsm {

std::vector<std::string> split_at(std::string_view text, char separator);

}  // namespace wsm
