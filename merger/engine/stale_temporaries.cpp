#include "merger/engine/stale_temporaries.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

namespace wsm::merger {

namespace fs = std::filesystem;

namespace {
// The writer's pid in a temporary's name, or nullopt when the name is not a temporary's.
std::optional<pid_t> temporary_owner(const std::string& name) {
  const auto at = name.rfind(".tmp-");
  if (at == std::string::npos) return std::nullopt;
  const char* first = name.data() + at + 5;
  const char* last = name.data() + name.size();
  long pid = 0;
  const auto [end, ec] = std::from_chars(first, last, pid);
  if (ec != std::errc() || end == first || end == last || *end != '-' || pid <= 0) return std::nullopt;
  return static_cast<pid_t>(pid);
}

bool process_alive(pid_t pid) { return pid == ::getpid() || ::kill(pid, 0) == 0 || errno == EPERM; }

std::uint64_t size_of(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_directory(p, ec)) {
    const auto n = fs::file_size(p, ec);
    return ec ? 0 : n;
  }
  std::uint64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  return total;
}
// Removes `stale`, logging what it cannot, and one line for what it did under `where`.
SweepResult remove_stale(const std::vector<fs::path>& stale, const fs::path& where) {
  SweepResult result;
  for (const auto& p : stale) {
    const auto bytes = size_of(p);
    std::error_code rm;
    fs::remove_all(p, rm);
    if (rm) {
      spdlog::warn("{}: cannot remove stale temporary: {}", p.string(), rm.message());
      continue;
    }
    ++result.removed;
    result.bytes += bytes;
  }
  if (result.removed > 0)
    spdlog::info("{}: removed {} temporaries ({} bytes) left by writers that died", where.string(), result.removed,
                 result.bytes);
  return result;
}
}  // namespace

SweepResult sweep_stale_temporaries(const fs::path& root) {
  std::error_code ec;
  if (root.empty() || !fs::is_directory(root, ec)) return {};
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const auto owner = temporary_owner(it->path().filename().string());
    if (!owner) continue;
    if (it->is_directory(ec)) it.disable_recursion_pending();  // a sharded set's temporary: removed whole
    if (!process_alive(*owner)) stale.push_back(it->path());
  }
  if (ec) spdlog::warn("{}: cannot list everything for stale temporaries: {}", root.string(), ec.message());
  return remove_stale(stale, root);
}

SweepResult sweep_stale_temporaries_of(const fs::path& final_path) {
  const fs::path dir = final_path.has_parent_path() ? final_path.parent_path() : fs::path(".");
  const std::string prefix = final_path.filename().string() + ".tmp-";
  std::error_code ec;
  std::vector<fs::path> stale;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(prefix) || name.find(".tmp-", prefix.size()) != std::string::npos) continue;
    if (const auto owner = temporary_owner(name); owner && !process_alive(*owner)) stale.push_back(it->path());
  }
  return remove_stale(stale, dir);
}

}  // namespace wsm::merger
