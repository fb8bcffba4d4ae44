#pragma once
// Lets go of mapped input pages the merge has finished with, in batches. Each release_mapped call
// on a multi-threaded process ends in a TLB shoot-down (an interrupt to every other core running
// it), so releasing every chunk of every input on its own costs more than zapping the pages does.
// PageReleaser collects finished ranges until `batch_bytes` are pending, then coalesces adjacent
// ones (consecutive chunks of a tensor, consecutive tensors of a file) and releases each run once.
// RSS thus stays within batch_bytes of what the pipeline holds. Releasing is advisory: the page
// cache keeps the data, a page released early is faulted in again.
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace wsm::merger {

class PageReleaser {
 public:
  explicit PageReleaser(std::uint64_t batch_bytes) : batch_bytes_(batch_bytes) {}
  ~PageReleaser() { flush(); }
  PageReleaser(const PageReleaser&) = delete;
  PageReleaser& operator=(const PageReleaser&) = delete;

  void add(std::span<const std::byte> bytes);  // thread-safe
  void flush();                                // releases whatever is pending

 private:
  void flush_locked();

  const std::uint64_t batch_bytes_;
  std::mutex mutex_;  // guards pending_ and pending_bytes_
  std::vector<std::span<const std::byte>> pending_;
  std::uint64_t pending_bytes_ = 0;
};

}  // namespace wsm::merger
