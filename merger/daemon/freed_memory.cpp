#include "merger/daemon/freed_memory.h"

#include <malloc.h>

#include <algorithm>
#include <climits>

#include <spdlog/spdlog.h>

namespace wsm::merger {

void keep_freed_memory(std::uint64_t keep_bytes) {
  // mallopt takes an int; glibc's largest mmap threshold is 32 MiB on 64-bit.
  const int keep = static_cast<int>(std::min<std::uint64_t>(keep_bytes, INT_MAX));
  const bool ok = mallopt(M_ARENA_MAX, 1) == 1 && mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 &&
                  mallopt(M_TRIM_THRESHOLD, keep) == 1;
  if (!ok) spdlog::warn("malloc settings for frame reuse were refused; ingest will be slower");
}

}  // namespace wsm::merger
