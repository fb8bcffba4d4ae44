// The HDF5 encoding's names and signature. The rest of the part, split the way LevelDB splits
// table/: hdf5_library.h (lock, errors, handles), hdf5_types.h (types, attributes, element ranges),
// hdf5_helper_protocol.h (what the helper process is asked), hdf5_inspector.h (the helper's side),
// hdf5_helper.h (wsm's side of the helper), hdf5_reader.cpp, hdf5_writer.cpp.
#include "wsm/formats/hdf5_checkpoint.h"

#include <array>
#include <cstring>
#include <fstream>

namespace fs = std::filesystem;

namespace wsm {

std::string hdf5_escape_name(const std::string& name) {
  if (name == ".") return "%2E";
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c == '%') out += "%25";
    else if (c == '/') out += "%2F";
    else out += c;
  }
  return out;
}

std::string hdf5_unescape_name(const std::string& s) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool looks_like_hdf5(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<char, 8> sig{};
  in.read(sig.data(), sig.size());
  return in.gcount() == 8 && std::memcmp(sig.data(), "\x89HDF\r\n\x1a\n", 8) == 0;
}

}  // namespace wsm
