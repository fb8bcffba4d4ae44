#pragma once
// The daemon keeps received ZeroMQ frames as its window's storage (no copy), and ZeroMQ allocates
// each frame with malloc. Left to its defaults, glibc hands the pages of a checkpoint that leaves
// the window back to the kernel (heap trimming, per-thread heaps unmapped), and the next
// checkpoint's frames fault in freshly zeroed pages: that page clearing was the largest single cost
// of ingest. This keeps freed memory in one heap for the next frames instead.
#include <cstdint>

namespace wsm::merger {

// Call once, before any thread starts: one malloc arena, frames below 32 MiB from the heap, and
// up to `keep_bytes` of freed heap kept for reuse (the window's budget is the natural bound).
void keep_freed_memory(std::uint64_t keep_bytes);

}  // namespace wsm::merger
