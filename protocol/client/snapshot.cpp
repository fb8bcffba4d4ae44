#include "protocol/client/snapshot.h"

#include <algorithm>
#include <cstring>

#include "wsm/core/error.h"

namespace wsm::client_detail {

Buffer BufferPool::take(std::size_t size) {
  std::lock_guard lock(mu_);
  for (auto it = free_.begin(); it != free_.end(); ++it)
    if (it->capacity >= size) {
      Buffer b = std::move(*it);
      held_ -= b.capacity;
      free_.erase(it);
      return b;
    }
  return {std::make_unique_for_overwrite<std::byte[]>(size ? size : 1), size};
}

void BufferPool::give(Buffer b) {
  std::lock_guard lock(mu_);
  if (held_ + b.capacity > max_bytes_) return;  // let it go
  held_ += b.capacity;
  free_.push_back(std::move(b));
}

void SnapshotCopy::add(std::byte* dst, const std::byte* src, std::size_t n) {
  for (std::size_t off = 0; off < n; off += kBlock)
    blocks_.push_back({dst + off, src + off, std::min(kBlock, n - off)});
}

void SnapshotCopy::help() {
  for (std::size_t i; (i = next_.fetch_add(1)) < blocks_.size();) {
    std::memcpy(blocks_[i].dst, blocks_[i].src, blocks_[i].n);
    done_.fetch_add(1, std::memory_order_release);
    done_.notify_all();
  }
}

void SnapshotCopy::wait_done() {
  for (std::size_t d; (d = done_.load(std::memory_order_acquire)) < blocks_.size();) done_.wait(d);
}

namespace {
// A sharded sender names each block by its slice entry (tensor_slice.h) on the wire.
TensorSlice slice_of(const TensorView& t) {
  TensorSlice slice{t.global_shape, t.offsets, t.shape, t.replicated};
  if (t.global_shape.empty() && t.offsets.empty()) {
    slice.global_shape = t.shape;
    slice.offsets.assign(t.shape.size(), 0);
  }
  if (auto problem = slice_problem(slice)) throw Error("send_checkpoint: tensor '" + t.name + "': " + *problem);
  return slice;
}

}  // namespace

std::shared_ptr<Snapshot> describe(std::int64_t step, std::int64_t tokens, double lr,
                                   std::span<const TensorView> tensors, const ClientOptions& opt) {
  auto snap = std::make_shared<Snapshot>();
  snap->step = step;
  snap->tokens = tokens;
  snap->lr = lr;
  bool sharded = opt.world_size > 1;
  for (const auto& t : tensors) sharded = sharded || !t.global_shape.empty() || !t.offsets.empty() || t.replicated;
  for (const auto& t : tensors) {
    TensorInfo info{t.name, t.dtype, t.shape};
    if (info.nbytes() != t.data.size())
      throw Error("send_checkpoint: tensor '" + t.name + "' has " + std::to_string(t.data.size()) +
                  " bytes, its dtype and shape say " + std::to_string(info.nbytes()));
    if (sharded) {
      snap->slices.push_back(slice_of(t));
      snap->names.push_back(t.name);
      info.name = slice_entry_name(t.name, snap->slices.back());
    }
    snap->offsets.push_back(snap->total);
    snap->total += t.data.size();
    snap->manifest.push_back(std::move(info));
  }
  return snap;
}

}  // namespace wsm::client_detail
