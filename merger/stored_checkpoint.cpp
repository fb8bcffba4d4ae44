#include "merger/stored_checkpoint.h"

#include <cstring>

namespace wsm::merger {

FileLease::~FileLease() {
  if (!dropped) return;
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

TensorBuffer::~TensorBuffer() {
  if (bytes)
    if (auto p = pool.lock()) p->give(std::move(bytes), capacity);
}

TensorBuffer BufferPool::take(std::uint64_t size) {
  {
    std::lock_guard lock(mu_);
    // The smallest idle buffer that fits, unless it would waste more than half of itself.
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first / 2 <= size) {
      TensorBuffer b;
      b.capacity = it->first;
      b.bytes = std::move(it->second);
      b.size = size;
      b.pool = weak_from_this();
      idle_ -= b.capacity;
      free_.erase(it);
      return b;
    }
  }
  TensorBuffer b = make_buffer(size);
  b.pool = weak_from_this();
  return b;
}

void BufferPool::give(std::unique_ptr<std::byte[]> bytes, std::uint64_t capacity) {
  std::lock_guard lock(mu_);
  if (idle_ + capacity > max_bytes_) return;  // freed
  idle_ += capacity;
  free_.emplace(capacity, std::move(bytes));
}

std::uint64_t BufferPool::idle_bytes() const {
  std::lock_guard lock(mu_);
  return idle_;
}

TensorBuffer make_buffer(std::uint64_t size, BufferPool* pool) {
  if (pool) return pool->take(size);
  TensorBuffer b;
  b.bytes = std::make_unique_for_overwrite<std::byte[]>(size ? size : 1);
  b.size = size;
  b.capacity = size ? size : 1;
  return b;
}

std::uint64_t StoredCheckpoint::nbytes() const {
  std::uint64_t n = 0;
  for (const auto& t : tensors) n += t.nbytes();
  return n;
}

CheckpointMeta StoredCheckpoint::meta() const {
  CheckpointMeta m;
  m.step = step;
  m.tokens = tokens;
  m.lr = lr;
  m.run_id = run_id;
  return m;
}

std::shared_ptr<const StoredCheckpoint> without_memory(const StoredCheckpoint& c) {
  if (c.file.empty()) throw Error("window: cannot drop the RAM copy of step " + std::to_string(c.step) + " (no file)");
  auto out = std::make_shared<StoredCheckpoint>();
  out->run_id = c.run_id;
  out->step = c.step;
  out->tokens = c.tokens;
  out->lr = c.lr;
  out->tensors = c.tensors;
  out->file = c.file;
  out->lease = c.lease;
  return out;
}

namespace {
class RamReader final : public CheckpointReader {
 public:
  explicit RamReader(std::shared_ptr<const StoredCheckpoint> c)
      : c_(std::move(c)), meta_(c_->meta()), path_("window:" + c_->run_id + "/step_" + std::to_string(c_->step)) {}
  const std::vector<TensorInfo>& tensors() const override { return c_->tensors; }
  const CheckpointMeta& meta() const override { return meta_; }
  std::string format() const override { return "memory"; }
  const std::filesystem::path& path() const override { return path_; }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override {
    for (std::size_t i = 0; i < c_->tensors.size(); ++i)
      if (c_->tensors[i].name == name) {
        if (offset + dst.size() > c_->data[i].size)
          throw Error(path_.string() + ": read past the end of tensor '" + name + "'");
        if (!dst.empty()) std::memcpy(dst.data(), c_->data[i].bytes.get() + offset, dst.size());
        return;
      }
    throw Error(path_.string() + ": no tensor '" + name + "'");
  }

 private:
  std::shared_ptr<const StoredCheckpoint> c_;
  CheckpointMeta meta_;
  std::filesystem::path path_;
};
}  // namespace

std::unique_ptr<CheckpointReader> open_stored(std::shared_ptr<const StoredCheckpoint> c) {
  if (c->in_memory()) return std::make_unique<RamReader>(std::move(c));
  return open_checkpoint(c->file);
}

void persist(const StoredCheckpoint& c, const std::filesystem::path& path) {
  auto writer = create_checkpoint(path, c.meta(), c.tensors);
  for (std::size_t i = 0; i < c.tensors.size(); ++i) writer->write(c.tensors[i].name, 0, c.data[i].span());
  writer->commit();
}

std::shared_ptr<const StoredCheckpoint> load_stored(const std::filesystem::path& path) {
  auto reader = open_checkpoint(path);
  const auto& meta = reader->meta();
  if (!meta.step) throw Error(path.string() + ": stored checkpoint has no step");
  auto c = std::make_shared<StoredCheckpoint>();
  c->run_id = meta.run_id;
  c->step = *meta.step;
  c->tokens = meta.tokens.value_or(0);
  c->lr = meta.lr.value_or(0);
  c->tensors = reader->tensors();
  c->file = path;
  c->lease = std::make_shared<FileLease>(path);
  c->lease->persisted = true;
  return c;
}

}  // namespace wsm::merger
