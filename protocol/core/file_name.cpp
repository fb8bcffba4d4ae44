#include "wsm/core/file_name.h"

namespace wsm {

std::string file_name_safe(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (!is_file_name_char(c)) c = '_';
  return out;
}

}  // namespace wsm
