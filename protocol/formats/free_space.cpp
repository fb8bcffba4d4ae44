#include "wsm/formats/free_space.h"

#include <sys/statvfs.h>

#include <cstdio>
#include <string>

#include "wsm/core/error.h"

namespace fs = std::filesystem;

namespace wsm {

namespace {

std::string human(std::uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace

std::uint64_t free_bytes(const fs::path& path) {
  std::error_code ec;
  fs::path dir = fs::is_directory(path, ec) ? path : path.parent_path();
  if (dir.empty()) dir = ".";
  struct statvfs st {};
  // No such directory (yet): unknown, so no refusal here; creating the output will say what is wrong.
  if (::statvfs(dir.c_str(), &st) != 0) return UINT64_MAX;
  const std::uint64_t blocks = st.f_bavail, size = st.f_frsize;
  return size != 0 && blocks > UINT64_MAX / size ? UINT64_MAX : blocks * size;
}

void require_free_space(const fs::path& out, std::uint64_t need, std::uint64_t available) {
  if (need <= available) return;
  throw Error(out.string() + ": needs " + std::to_string(need) + " bytes (" + human(need) + ") but its filesystem has " +
              std::to_string(available) + " (" + human(available) + ") free; refusing to start writing");
}

std::uint64_t payload_bytes(const std::vector<TensorInfo>& tensors) {
  std::uint64_t total = 0;
  for (const auto& t : tensors)
    if (__builtin_add_overflow(total, t.nbytes(), &total)) return UINT64_MAX;
  return total;
}

void require_free_space(const fs::path& out, std::uint64_t need) { require_free_space(out, need, free_bytes(out)); }

}  // namespace wsm
