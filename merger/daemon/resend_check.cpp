#include "merger/daemon/resend_check.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace wsm::merger {

std::optional<std::string> first_difference(const StoredCheckpoint& received, std::shared_ptr<const StoredCheckpoint> stored) {
  if (received.tensors != stored->tensors) return "the tensors (names, dtypes, shapes) differ";
  auto reader = open_stored(std::move(stored));
  constexpr std::uint64_t kBlock = 4 << 20;
  std::vector<std::byte> mine, theirs;
  for (std::size_t i = 0; i < received.tensors.size(); ++i) {
    const auto& t = received.tensors[i];
    const std::uint64_t n = t.nbytes();
    for (std::uint64_t off = 0; off < n; off += kBlock) {
      const auto len = static_cast<std::size_t>(std::min(kBlock, n - off));
      mine.resize(len);
      theirs.resize(len);
      received.data[i].read(off, mine);
      reader->read(t.name, off, theirs);
      if (std::memcmp(mine.data(), theirs.data(), len) != 0) {
        const auto at = std::mismatch(mine.begin(), mine.end(), theirs.begin()).first - mine.begin();
        return "tensor '" + t.name + "' differs at byte " + std::to_string(off + static_cast<std::uint64_t>(at));
      }
    }
  }
  return std::nullopt;
}

}  // namespace wsm::merger
