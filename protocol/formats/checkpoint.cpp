#include "wsm/formats/checkpoint.h"

#include <map>
#include <set>
#include <unordered_map>

#include "wsm/formats/hdf5_checkpoint.h"
#include "wsm/formats/multipart_checkpoint.h"
#include "wsm/formats/safetensors_file.h"
#include "wsm/formats/sharded_checkpoint.h"
#include "protocol/formats/torch_format.h"
#include "wsm/formats/trainer_folder.h"

namespace fs = std::filesystem;

namespace wsm {

std::uint64_t TensorInfo::numel() const {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw Error("tensor '" + name + "': negative dimension " + std::to_string(d));
    const auto u = static_cast<std::uint64_t>(d);
    if (u != 0 && n > UINT64_MAX / u) throw Error("tensor '" + name + "': element count overflows 64 bits");
    n *= u;
  }
  return n;
}

std::uint64_t TensorInfo::nbytes() const {
  const std::uint64_t n = numel(), size = dtype_size(dtype);
  if (n > UINT64_MAX / size)
    throw Error("tensor '" + name + "': " + std::to_string(n) + " elements of " + std::string(dtype_name(dtype)) +
                " overflow 64 bits of bytes");
  return n * size;
}

const TensorInfo& CheckpointReader::info(const std::string& name) const {
  for (const auto& t : tensors())
    if (t.name == name) return t;
  throw Error(path().string() + ": no tensor '" + name + "'");
}

namespace {

// Checks every write against the manifest and refuses to commit a checkpoint with bytes that
// were never written, whatever the format.
class CheckedWriter final : public CheckpointWriter {
 public:
  CheckedWriter(fs::path path, const std::vector<TensorInfo>& tensors, std::unique_ptr<CheckpointWriter> inner)
      : path_(std::move(path)), inner_(std::move(inner)) {
    for (const auto& t : tensors) sizes_[t.name] = t.nbytes();
  }

  void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) override {
    const auto it = sizes_.find(name);
    if (it == sizes_.end()) throw Error(path_.string() + ": tensor '" + name + "' is not in the manifest");
    if (offset > it->second || src.size() > it->second - offset)
      throw Error(path_.string() + ": tensor '" + name + "': write of bytes [" + std::to_string(offset) + ", " +
                  std::to_string(offset + src.size()) + ") outside its " + std::to_string(it->second) + " bytes");
    inner_->write(name, offset, src);
    if (!src.empty()) add_interval(written_[name], offset, offset + src.size());
  }

  void prepare() override {
    for (const auto& [name, size] : sizes_) {
      if (size == 0) continue;
      const auto it = written_.find(name);
      std::uint64_t done = 0;
      if (it != written_.end())
        for (const auto& [lo, hi] : it->second) done += hi - lo;
      if (done != size)
        throw Error(path_.string() + ": tensor '" + name + "': only " + std::to_string(done) + " of " +
                    std::to_string(size) + " bytes were written; refusing to commit");
    }
    inner_->prepare();
  }
  void commit() override {
    prepare();
    inner_->commit();
  }
  std::vector<LaidOutFile> layout() const override { return inner_->layout(); }

 private:
  // Disjoint [lo, hi) intervals, merged as they touch.
  static void add_interval(std::map<std::uint64_t, std::uint64_t>& s, std::uint64_t lo, std::uint64_t hi) {
    auto it = s.upper_bound(lo);
    if (it != s.begin() && std::prev(it)->second >= lo) {
      --it;
      lo = it->first;
      hi = std::max(hi, it->second);
      it = s.erase(it);
    }
    while (it != s.end() && it->first <= hi) {
      hi = std::max(hi, it->second);
      it = s.erase(it);
    }
    s.emplace(lo, hi);
  }

  fs::path path_;
  std::unique_ptr<CheckpointWriter> inner_;
  std::unordered_map<std::string, std::uint64_t> sizes_;
  std::unordered_map<std::string, std::map<std::uint64_t, std::uint64_t>> written_;
};

}  // namespace

namespace {

// A reader whose metadata lacks a step the checkpoint's layout records (trainer_folder.h): the
// same tensors, with step, tokens and lr filled in and the step's source under wsm.step_source.
class LayoutMetaReader final : public CheckpointReader {
 public:
  LayoutMetaReader(std::unique_ptr<CheckpointReader> inner, const LayoutPosition& where)
      : inner_(std::move(inner)), meta_(inner_->meta()) {
    meta_.step = where.step;
    if (!meta_.tokens) meta_.tokens = where.tokens;
    if (!meta_.lr) meta_.lr = where.lr;
    meta_.extra["wsm.step_source"] = where.source;
  }
  const std::vector<TensorInfo>& tensors() const override { return inner_->tensors(); }
  const CheckpointMeta& meta() const override { return meta_; }
  std::string format() const override { return inner_->format(); }
  const fs::path& path() const override { return inner_->path(); }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override {
    inner_->read(name, offset, dst);
  }
  std::optional<std::span<const std::byte>> mapped(const std::string& name) override { return inner_->mapped(name); }

 private:
  std::unique_ptr<CheckpointReader> inner_;
  CheckpointMeta meta_;
};

bool holds_safetensors(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".safetensors" || e.path().filename().string().ends_with(".index.json")) return true;
  return false;
}

std::unique_ptr<CheckpointReader> open_by_format(const fs::path& path, const fs::file_status& st) {
  if (fs::is_directory(st)) {
    if (!holds_safetensors(path))
      if (const auto torch = torch_weights_in(path)) throw Error(torch_save_message(*torch, *torch_save_format(*torch)));
    return is_multipart_dir(path) ? open_multipart(path) : open_sharded(path);
  }
  const std::string name = path.filename().string();
  if (name.ends_with(".index.json")) return open_sharded(path);
  const std::string ext = path.extension().string();
  if (ext == ".h5" || ext == ".hdf5") return open_hdf5(path);
  if (const auto torch = torch_save_format(path)) throw Error(torch_save_message(path, *torch));
  if (ext == ".safetensors") return std::make_unique<SafetensorsReader>(path);
  // Unknown extension: trust the content.
  if (looks_like_hdf5(path)) return open_hdf5(path);
  return std::make_unique<SafetensorsReader>(path);
}

}  // namespace

std::unique_ptr<CheckpointReader> open_checkpoint(const fs::path& path) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw Error(path.string() + ": no such file or directory");
  auto reader = open_by_format(path, st);
  if (reader->meta().step) return reader;
  const LayoutPosition where = position_from_layout(path);
  if (!where.step) return reader;
  return std::make_unique<LayoutMetaReader>(std::move(reader), where);
}

void commit_all(std::span<CheckpointWriter* const> writers) {
  for (CheckpointWriter* w : writers) w->prepare();
  for (std::size_t i = 0; i < writers.size(); ++i) {
    try {
      writers[i]->commit();
    } catch (const Error& e) {
      // Only a rename can fail here; say which outputs are already in place.
      if (i == 0) throw;
      throw Error(std::string(e.what()) + " (" + std::to_string(i) + " of " + std::to_string(writers.size()) +
                  " outputs were already committed)");
    }
  }
}

namespace {

std::unique_ptr<CheckpointWriter> create_format_writer(const fs::path& path, const CheckpointMeta& meta,
                                                       const std::vector<TensorInfo>& tensors,
                                                       const WriteOptions& options) {
  const std::string where = path.string();
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name.empty()) throw Error(where + ": empty tensor name");
    if (!names.insert(t.name).second) throw Error(where + ": duplicate tensor name '" + t.name + "'");
    (void)t.nbytes();  // rejects negative or overflowing shapes up front
  }
  const std::string name = path.filename().string();
  const std::string ext = path.extension().string();
  if (name.ends_with(".index.json"))
    throw Error(where + ": write a sharded set by giving its directory, not the index file");
  if (options.shard_bytes > 0 || ext.empty()) return create_sharded(path, meta, tensors, options.shard_bytes, options.hf_template);
  if (!options.hf_template.empty())
    throw Error(where + ": a Hugging Face model directory is written to a directory, not a " + ext + " file");
  if (ext == ".h5" || ext == ".hdf5") return create_hdf5(path, meta, tensors, options);
  if (ext == ".safetensors") return create_safetensors(path, meta, tensors);
  throw Error(where + ": unknown checkpoint extension '" + ext + "' (use .h5, .hdf5, .safetensors or a directory)");
}

}  // namespace

std::unique_ptr<CheckpointWriter> create_checkpoint(const fs::path& path, const CheckpointMeta& meta,
                                                    const std::vector<TensorInfo>& tensors,
                                                    const WriteOptions& options) {
  return std::make_unique<CheckedWriter>(path, tensors, create_format_writer(path, meta, tensors, options));
}

std::unique_ptr<CheckpointWriter> create_laid_out_checkpoint(const fs::path& path, const CheckpointMeta& meta,
                                                             const std::vector<TensorInfo>& tensors,
                                                             const WriteOptions& options) {
  const std::string ext = path.extension().string();
  WriteOptions o = options;
  if (ext == ".h5" || ext == ".hdf5") {
    if (o.compression > 0 || o.chunk_bytes > 0)
      throw Error(path.string() + ": compressed or chunked HDF5 cannot be written by several processes");
    o.preallocate = true;
  }
  return create_format_writer(path, meta, tensors, o);
}

Checkpoint load_checkpoint(const fs::path& path) {
  auto reader = open_checkpoint(path);
  Checkpoint ckpt;
  ckpt.meta = reader->meta();
  ckpt.tensors.reserve(reader->tensors().size());
  for (const auto& info : reader->tensors()) {
    Tensor t{info, std::vector<std::byte>(info.nbytes())};
    reader->read(info.name, 0, t.data);
    ckpt.tensors.push_back(std::move(t));
  }
  return ckpt;
}

void save_checkpoint(const fs::path& path, const Checkpoint& ckpt, const WriteOptions& options) {
  std::vector<TensorInfo> infos;
  infos.reserve(ckpt.tensors.size());
  for (const auto& t : ckpt.tensors) {
    if (t.data.size() != t.info.nbytes())
      throw Error(path.string() + ": tensor '" + t.info.name + "' holds " + std::to_string(t.data.size()) +
                  " bytes but its shape and dtype need " + std::to_string(t.info.nbytes()));
    infos.push_back(t.info);
  }
  auto writer = create_checkpoint(path, ckpt.meta, infos, options);
  for (const auto& t : ckpt.tensors) writer->write(t.info.name, 0, t.data);
  writer->commit();
}

}  // namespace wsm
