#include "wsm/core/file_name.h"

namespace wsm {

std::string file_name_safe(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    if (!is_file_name_char(c)) c = '_';
  return out;
}

std::string folder_name(const std::filesystem::path& dir) {
  std::filesystem::path p = std::filesystem::absolute(dir).lexically_normal();
  while (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace wsm
