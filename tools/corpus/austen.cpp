#include "tools/corpus/austen.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <string>
#include <system_error>

namespace wsm::tools {
namespace fs = std::filesystem;
namespace {

constexpr const char* kCache = "data/cache/austen/train.txt";
constexpr const char* kFetcher = "tools/fetch-austen.py";

// The nearest folder above the running executable that holds tools/fetch-austen.py (found at run
// time from /proc/self/exe: no path of the build machine is compiled in).
fs::path source_tree_of_executable() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  for (fs::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    if (fs::exists(dir / kFetcher, ec)) return dir;
    if (dir == dir.root_path()) break;
  }
  return {};
}

}  // namespace

fs::path austen_root() {
  if (fs::exists(kCache)) return fs::current_path();
  const fs::path root = source_tree_of_executable();
  if (root.empty()) return fs::current_path();
  if (!fs::exists(root / kCache)) {
    spdlog::info("Austen corpus not cached yet: running {} (apt-get download + decode)", kFetcher);
    const std::string cmd =
        "python3 '" + (root / kFetcher).string() + "' --out '" + (root / "data/cache").string() + "'";
    if (std::system(cmd.c_str()) != 0) spdlog::warn("{} failed", kFetcher);
  }
  return root;
}

}  // namespace wsm::tools
