#include "merger/engine/page_releaser.h"

#include <algorithm>
#include <functional>

#include "wsm/formats/mapped_file.h"

namespace wsm::merger {

void PageReleaser::add(std::span<const std::byte> bytes) {
  if (bytes.empty()) return;
  std::lock_guard lock(mutex_);
  pending_.push_back(bytes);
  pending_bytes_ += bytes.size();
  if (pending_bytes_ >= batch_bytes_) flush_locked();
}

void PageReleaser::flush() {
  std::lock_guard lock(mutex_);
  flush_locked();
}

void PageReleaser::flush_locked() {
  std::sort(pending_.begin(), pending_.end(),
            [](const auto& a, const auto& b) { return std::less<>()(a.data(), b.data()); });
  const std::byte* begin = nullptr;
  const std::byte* end = nullptr;
  for (const auto& s : pending_) {
    if (begin && s.data() <= end) {  // touches the run so far: extend it
      end = std::max(end, s.data() + s.size());
      continue;
    }
    if (begin) release_mapped({begin, end});
    begin = s.data();
    end = s.data() + s.size();
  }
  if (begin) release_mapped({begin, end});
  pending_.clear();
  pending_bytes_ = 0;
}

}  // namespace wsm::merger
