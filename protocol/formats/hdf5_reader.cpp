// The HDF5 reader in wsm's own process: the manifest comes from the helper process (hdf5_helper.h);
// bytes come from a read-only mapping of the file when they lie in it as-is, otherwise from the
// helper, a bounded piece at a time.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

#include "protocol/formats/hdf5_helper.h"
#include "protocol/formats/hdf5_helper_protocol.h"
#include "protocol/formats/hdf5_types.h"
#include "wsm/core/error.h"
#include "wsm/core/printable.h"
#include "wsm/formats/hdf5_checkpoint.h"
#include "wsm/formats/safetensors_header.h"
#include "wsm/formats/mapped_file.h"

namespace fs = std::filesystem;

namespace wsm {
namespace hdf5 {
namespace {

class Hdf5Reader final : public CheckpointReader {
 public:
  explicit Hdf5Reader(fs::path path) : path_(std::move(path)) {
    const std::string where = path_.string();
    if (!fs::is_regular_file(path_)) throw Error(where + ": no such file");
    helper_file_ = std::make_unique<HelperFile>(path_);
    std::map<std::string, std::string> extra;
    entries_ = parse_manifest(helper_file_->manifest(), where, extra);
    meta_ = meta_from_strings(extra, where);
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const Hdf5Entry& e = entries_[i];
      infos_.push_back(e.info);
      if (!index_.emplace(e.info.name, i).second)
        throw Error(where + ": duplicate tensor name '" + printable(e.info.name) + "'");
      if (!e.offset) continue;
      if (!file_map_) file_map_ = std::make_unique<MappedFile>(path_);
      const std::uint64_t size = file_map_->bytes().size();
      if (*e.offset > size || e.info.nbytes() > size - *e.offset)
        throw Error(where + ": tensor '" + printable(e.info.name) + "': its data (" + std::to_string(e.info.nbytes()) +
                    " bytes at offset " + std::to_string(*e.offset) + ") runs past the end of the file (truncated?)");
    }
    // Every byte mapped (wsm's own uncompressed files): the helper is not needed any more.
    if (std::all_of(entries_.begin(), entries_.end(),
                    [](const Hdf5Entry& e) { return e.offset || e.info.nbytes() == 0; }))
      helper_file_.reset();
  }

  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  const CheckpointMeta& meta() const override { return meta_; }
  std::string format() const override { return "hdf5"; }
  const fs::path& path() const override { return path_; }

  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override {
    const std::size_t i = find(name);
    const Hdf5Entry& e = entries_[i];
    const std::string where = path_.string() + ": tensor '" + printable(name) + "'";
    const std::uint64_t nbytes = e.info.nbytes();
    if (offset > nbytes || dst.size() > nbytes - offset) throw Error(range_error(where, offset, dst.size(), nbytes));
    if (dst.empty()) return;
    if (e.offset) {
      std::memcpy(dst.data(), file_map_->bytes().data() + *e.offset + offset, dst.size());
      return;
    }
    const std::uint64_t es = dtype_size(e.info.dtype);
    split_bytes(
        offset, dst.size(), es,
        [&](std::uint64_t e0, std::uint64_t e1, std::uint64_t at) { fetch(i, e0, e1, dst.data() + at, where); },
        [&](std::uint64_t el) {
          std::array<std::byte, 8> tmp{};
          fetch(i, el, el + 1, tmp.data(), where);
          const std::uint64_t lo = std::max(offset, el * es), hi = std::min(offset + dst.size(), (el + 1) * es);
          std::memcpy(dst.data() + (lo - offset), tmp.data() + (lo - el * es), hi - lo);
        });
  }

  std::optional<std::span<const std::byte>> mapped(const std::string& name) override {
    const Hdf5Entry& e = entries_[find(name)];
    if (!e.offset) return std::nullopt;
    return file_map_->bytes().subspan(*e.offset, e.info.nbytes());
  }

 private:
  std::size_t find(const std::string& name) const {
    const auto it = index_.find(name);
    if (it == index_.end()) throw Error(path_.string() + ": no tensor '" + printable(name) + "'");
    return it->second;
  }

  // Elements [e0, e1) of tensor i from the helper, in requests of at most kMaxReadBytes.
  void fetch(std::size_t i, std::uint64_t e0, std::uint64_t e1, std::byte* dst, const std::string& where) {
    const std::uint64_t es = dtype_size(entries_[i].info.dtype), step = kMaxReadBytes / es;
    for (std::uint64_t a = e0; a < e1; a += step) {
      const std::uint64_t b = std::min(e1, a + step);
      const std::string got = helper_file_->elements(i, a, b, (b - a) * es);
      if (got.size() != (b - a) * es) throw Error(where + ": the HDF5 helper process returned a short read");
      std::memcpy(dst + (a - e0) * es, got.data(), got.size());
    }
  }

  fs::path path_;
  std::unique_ptr<HelperFile> helper_file_;  // while some tensor is read through the helper
  CheckpointMeta meta_;
  std::vector<Hdf5Entry> entries_;
  std::vector<TensorInfo> infos_;
  std::unordered_map<std::string, std::size_t> index_;
  std::unique_ptr<MappedFile> file_map_;  // mapped when some tensor's bytes lie in the file as-is
};

}  // namespace
}  // namespace hdf5

std::unique_ptr<CheckpointReader> open_hdf5(const fs::path& path) { return std::make_unique<hdf5::Hdf5Reader>(path); }

}  // namespace wsm
