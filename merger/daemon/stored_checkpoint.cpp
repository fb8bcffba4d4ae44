#include "merger/daemon/stored_checkpoint.h"

#include <algorithm>
#include <cstring>

#include "wsm/formats/mapped_file.h"

namespace wsm::merger {

FileLease::~FileLease() {
  if (!dropped) return;
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

void TensorBytes::append(std::span<const std::byte> bytes, std::shared_ptr<const void> owner) {
  pieces.push_back({size(), bytes, std::move(owner)});
}

void TensorBytes::append_copy(std::span<const std::byte> bytes) {
  auto owner = std::make_shared<const std::vector<std::byte>>(bytes.begin(), bytes.end());
  append(*owner, owner);
}

void TensorBytes::read(std::uint64_t offset, std::span<std::byte> dst) const {
  if (offset > size() || dst.size() > size() - offset)
    throw Error("read of [" + std::to_string(offset) + ", " + std::to_string(offset + dst.size()) +
                ") past the end of a tensor of " + std::to_string(size()) + " bytes");
  if (dst.empty()) return;
  // The last piece that starts at or before offset, then forward through the pieces.
  auto it = std::upper_bound(pieces.begin(), pieces.end(), offset,
                             [](std::uint64_t o, const Piece& p) { return o < p.offset; });
  std::size_t done = 0;
  for (--it; done < dst.size(); ++it) {
    const std::uint64_t from = offset + done - it->offset;
    const std::size_t n = std::min<std::uint64_t>(dst.size() - done, it->bytes.size() - from);
    std::memcpy(dst.data() + done, it->bytes.data() + from, n);
    done += n;
  }
}

TensorBytes tensor_bytes(std::vector<std::byte> bytes) {
  auto owner = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
  TensorBytes t;
  if (!owner->empty()) t.append(*owner, owner);
  return t;
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
  if (model) m.extra = *model;
  if (part) m.extra[kPartLayoutKey] = layout_to_json(*part);
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
  out->part = c.part;
  out->model = c.model;
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
        try {
          c_->data[i].read(offset, dst);
        } catch (const Error& e) {
          throw Error(path_.string() + ": tensor '" + name + "': " + e.what());
        }
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

void check_stored_reads(std::span<const CheckpointReader* const> readers) {
  std::vector<std::filesystem::path> files;  // a RAM copy's name maps no file, so it never matches
  for (const CheckpointReader* r : readers) files.push_back(r->path());
  const auto changed = changed_mapped_files(files);
  if (changed.empty()) return;
  std::string list;
  for (const auto& c : changed) list += (list.empty() ? "" : "; ") + c;
  throw Error("a stored checkpoint changed while read, nothing made from it is kept: " + list);
}

void persist(const StoredCheckpoint& c, const std::filesystem::path& path) {
  auto writer = create_checkpoint(path, c.meta(), c.tensors);
  for (std::size_t i = 0; i < c.tensors.size(); ++i) {
    if (c.data[i].pieces.empty()) writer->write(c.tensors[i].name, 0, {});  // an empty tensor
    for (const auto& piece : c.data[i].pieces) writer->write(c.tensors[i].name, piece.offset, piece.bytes);
  }
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
  if (auto it = meta.extra.find(kPartLayoutKey); it != meta.extra.end())
    c->part = std::make_shared<const PartLayout>(layout_from_json(it->second, path.string()));
  if (auto model = model_metadata(meta.extra); !model.empty())
    c->model = std::make_shared<const ModelMetadata>(std::move(model));
  c->file = path;
  c->lease = std::make_shared<FileLease>(path);
  c->lease->persisted = true;
  return c;
}

}  // namespace wsm::merger
