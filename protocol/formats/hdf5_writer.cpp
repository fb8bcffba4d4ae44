// The HDF5 writer: one dataset per tensor, written in ranges as the merge produces them, into an
// AtomicFile (temporary name, fsync, rename) after checking the filesystem has room for it.
#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

#include "protocol/formats/hdf5_library.h"
#include "protocol/formats/hdf5_types.h"
#include "wsm/core/error.h"
#include "wsm/core/printable.h"
#include "wsm/formats/atomic_file.h"
#include "wsm/formats/free_space.h"
#include "wsm/formats/hdf5_checkpoint.h"
#include "wsm/formats/safetensors_header.h"

namespace fs = std::filesystem;

namespace wsm {
namespace hdf5 {
namespace {

// Chunk shape of at most ~chunk_bytes: whole trailing dimensions while they fit, then part of the next.
std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, std::uint64_t es, std::uint64_t chunk_bytes) {
  std::vector<hsize_t> c(dims.size(), 1);
  std::uint64_t budget = std::max<std::uint64_t>(1, chunk_bytes / es);
  for (std::size_t k = dims.size(); k-- > 0;) {
    const hsize_t d = std::max<hsize_t>(dims[k], 1);
    if (d <= budget) {
      c[k] = d;
      budget /= d;
    } else {
      c[k] = std::max<hsize_t>(budget, 1);
      break;
    }
  }
  return c;
}

class Hdf5Writer final : public CheckpointWriter {
 public:
  Hdf5Writer(const fs::path& path, const CheckpointMeta& meta, const std::vector<TensorInfo>& tensors,
             const WriteOptions& options)
      : out_(path) {
    const Lock lock(hdf5_lock());
    where_ = path.string();
    if (options.compression < 0 || options.compression > 9)
      throw Error(where_ + ": deflate level must be 0..9, got " + std::to_string(options.compression));
    // Uncompressed, every declared byte reaches the disk (an unwritten tensor as its fill value);
    // compressed sizes are not known up front.
    if (options.compression == 0) require_free_space(path, payload_bytes(tensors));
    if (options.preallocate && (options.compression > 0 || options.chunk_bytes > 0))
      throw Error(where_ + ": a preallocated file is contiguous: no chunking or compression");
    Handle fapl = plist_handle(H5Pcreate(H5P_FILE_ACCESS), where_ + ": cannot create a property list");
    H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
    Handle fcpl = plist_handle(H5Pcreate(H5P_FILE_CREATE), where_ + ": cannot create a property list");
    if (options.preallocate) H5Pset_obj_track_times(fcpl.get(), false);  // same inputs, same bytes
    file_ = Handle(check(H5Fcreate(out_.temp_path().c_str(), H5F_ACC_EXCL, fcpl.get(), fapl.get()),
                         where_ + ": cannot create " + out_.temp_path().string()),
                   H5Fclose);
    write_meta(meta);
    Handle gcpl = plist_handle(H5Pcreate(H5P_GROUP_CREATE), where_ + ": cannot create a property list");
    check_status(H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED),
                 where_ + ": cannot track creation order");
    if (options.preallocate) H5Pset_obj_track_times(gcpl.get(), false);
    Handle group(check(H5Gcreate2(file_.get(), "tensors", H5P_DEFAULT, gcpl.get(), H5P_DEFAULT),
                       where_ + ": cannot create /tensors"),
                 H5Gclose);
    for (const auto& t : tensors) create_dataset(group.get(), t, options);
    if (options.preallocate) close_preallocated();
  }
  ~Hdf5Writer() override {
    const Lock lock(hdf5_lock());
    datasets_.clear();
    file_.reset();
  }

  void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) override {
    const auto it = index_.find(name);
    if (it == index_.end()) throw Error(where_ + ": tensor '" + name + "' is not in the manifest");
    if (!file_.valid()) throw Error(where_ + ": preallocated file: write its bytes at layout() offsets");
    Slot& s = datasets_[it->second];
    const std::string where = where_ + ": tensor '" + name + "'";
    const std::uint64_t nbytes = s.d.info.nbytes();
    if (offset > nbytes || src.size() > nbytes - offset) throw Error(range_error(where, offset, src.size(), nbytes));
    if (src.empty()) return;
    const Lock lock(hdf5_lock());
    const std::uint64_t es = dtype_size(s.d.info.dtype);
    split_bytes(
        offset, src.size(), es,
        [&](std::uint64_t e0, std::uint64_t e1, std::uint64_t at) {
          transfer_elements(s.dset.get(), s.mtype.get(), s.d, e0, e1, const_cast<std::byte*>(src.data() + at), true,
                            where);
        },
        [&](std::uint64_t e) {  // read-modify-write of an element split across two writes
          std::array<std::byte, 8> tmp{};
          transfer_elements(s.dset.get(), s.mtype.get(), s.d, e, e + 1, tmp.data(), false, where);
          const std::uint64_t lo = std::max(offset, e * es), hi = std::min(offset + src.size(), (e + 1) * es);
          std::memcpy(tmp.data() + (lo - e * es), src.data() + (lo - offset), hi - lo);
          transfer_elements(s.dset.get(), s.mtype.get(), s.d, e, e + 1, tmp.data(), true, where);
        });
  }

  void prepare() override {
    {
      const Lock lock(hdf5_lock());
      if (file_.valid()) {
        datasets_.clear();
        check_status(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), where_ + ": flush failed");
        check_status(file_.close(), where_ + ": close failed");
      }
    }
    out_.sync();
  }
  void commit() override {
    prepare();
    out_.commit();
  }
  std::vector<LaidOutFile> layout() const override {
    if (!preallocated_) return {};
    return {LaidOutFile{out_.temp_path(), offsets_}};
  }

 private:
  struct Slot {
    DatasetInfo d;
    Handle dset, mtype;
  };

  // Records where every dataset's bytes lie and closes the file: its structure is complete, and
  // libhdf5 writes nothing more while other processes fill the data (fill time is never).
  void close_preallocated() {
    for (const auto& s : datasets_) {
      if (s.d.info.nbytes() == 0) continue;
      const haddr_t at = H5Dget_offset(s.dset.get());
      if (at == HADDR_UNDEF) throw Error(where_ + ": tensor '" + s.d.info.name + "' was not allocated");
      offsets_.emplace(s.d.info.name, std::uint64_t(at));
    }
    datasets_.clear();
    check_status(H5Fflush(file_.get(), H5F_SCOPE_GLOBAL), where_ + ": flush failed");
    check_status(file_.close(), where_ + ": close failed");
    preallocated_ = true;
  }

  void write_meta(const CheckpointMeta& meta) {
    const hid_t root = file_.get();
    write_scalar_attr<std::int32_t>(root, "wsm.format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, kHdf5FormatVersion,
                                    where_);
    // Same keys and reserved names as safetensors' __metadata__, but numbers stay numbers.
    for (const auto& [k, v] : meta_to_strings(meta)) {
      if (k == "wsm.step" || k == "wsm.tokens" || k == "wsm.lr" || k == "wsm.run_id") continue;
      if (k == "format" && !meta.extra.contains("format")) continue;  // safetensors-only marker
      write_string_attr(root, k, v, where_);
    }
    if (meta.step) write_scalar_attr(root, "wsm.step", H5T_STD_I64LE, H5T_NATIVE_INT64, *meta.step, where_);
    if (meta.tokens) write_scalar_attr(root, "wsm.tokens", H5T_STD_I64LE, H5T_NATIVE_INT64, *meta.tokens, where_);
    if (meta.lr) write_scalar_attr(root, "wsm.lr", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, *meta.lr, where_);
    if (!meta.run_id.empty()) write_string_attr(root, "wsm.run_id", meta.run_id, where_);
  }

  void create_dataset(hid_t group, const TensorInfo& t, const WriteOptions& options) {
    const std::string where = where_ + ": tensor '" + t.name + "'";
    if (t.name.empty()) throw Error(where_ + ": empty tensor name");
    Slot s;
    s.d.info = t;
    s.d.path = "/tensors/" + hdf5_escape_name(t.name);
    for (auto v : t.shape) {
      if (v < 0) throw Error(where + ": negative dimension");
      s.d.dims.push_back(static_cast<hsize_t>(v));
    }
    Handle space = s.d.dims.empty() ? space_handle(H5Screate(H5S_SCALAR), where + ": cannot create a dataspace")
                                    : space_handle(H5Screate_simple(int(s.d.dims.size()), s.d.dims.data(), nullptr),
                                                   where + ": cannot create a dataspace");
    Handle dcpl = plist_handle(H5Pcreate(H5P_DATASET_CREATE), where + ": cannot create a property list");
    if (options.preallocate) {
      check_status(H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY), where + ": cannot set allocation time");
      check_status(H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER), where + ": cannot set fill time");
      H5Pset_obj_track_times(dcpl.get(), false);
    }
    const std::uint64_t numel = t.numel();
    const bool chunked = (options.chunk_bytes > 0 || options.compression > 0) && !s.d.dims.empty() && numel > 0;
    if (chunked) {
      const auto c = chunk_dims(s.d.dims, dtype_size(t.dtype), options.chunk_bytes ? options.chunk_bytes : 1 << 20);
      check_status(H5Pset_chunk(dcpl.get(), int(c.size()), c.data()), where + ": cannot set chunking");
      if (options.compression > 0)
        check_status(H5Pset_deflate(dcpl.get(), unsigned(options.compression)), where + ": cannot set deflate");
    }
    s.mtype = type_for(t.dtype);
    s.dset = Handle(check(H5Dcreate2(group, hdf5_escape_name(t.name).c_str(), s.mtype.get(), space.get(), H5P_DEFAULT,
                                     dcpl.get(), H5P_DEFAULT),
                          where + ": cannot create dataset " + s.d.path),
                    H5Dclose);
    if (t.dtype == DType::bf16) write_string_attr(s.dset.get(), "wsm_dtype", "bf16", where);
    if (!index_.emplace(t.name, datasets_.size()).second)
      throw Error(where_ + ": duplicate tensor name '" + t.name + "'");
    datasets_.push_back(std::move(s));
  }

  AtomicFile out_;
  std::string where_;
  Handle file_;
  bool preallocated_ = false;
  std::map<std::string, std::uint64_t> offsets_;  // preallocated: tensor -> file offset of its bytes
  std::vector<Slot> datasets_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace
}  // namespace hdf5

std::unique_ptr<CheckpointWriter> create_hdf5(const fs::path& path, const CheckpointMeta& meta,
                                              const std::vector<TensorInfo>& tensors, const WriteOptions& options) {
  return std::make_unique<hdf5::Hdf5Writer>(path, meta, tensors, options);
}

}  // namespace wsm
