#include "wsm/formats/hdf5_checkpoint.h"

#include <hdf5.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <charconv>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "wsm/core/printable.h"
#include "wsm/formats/atomic_file.h"
#include "protocol/formats/child_worker.h"
#include "wsm/formats/free_space.h"
#include "wsm/formats/mapped_file.h"
#include "wsm/formats/safetensors_header.h"

namespace fs = std::filesystem;

namespace wsm {

namespace {

// Once, before libhdf5's first use: silences its own multi-line stderr dump (errors reach the user
// as one-line wsm::Errors instead), and keeps it from registering its atexit teardown. A file
// whose close failed (a full disk: the final flush cannot be written) stays in libhdf5's tables,
// and that teardown would close it again at exit and crash; wsm closes every file it opened
// itself, and a temporary left unflushed at exit is removed or ignored anyway.
// Debian's libhdf5 is the thread-safe build, where the printing switch is per thread: every
// thread that calls libhdf5 turns it off for itself (`Lock` below does).
void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] { H5dont_atexit(); });
  thread_local bool quiet = false;
  if (!quiet) quiet = H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
}

std::recursive_mutex& hdf5_lock() {
  static std::recursive_mutex m;
  return m;
}
// Held around every libhdf5 call in this process; taking it also silences libhdf5 in this thread.
struct Lock {
  explicit Lock(std::recursive_mutex& m) : guard(m) { quiet_hdf5(); }
  std::lock_guard<std::recursive_mutex> guard;
};

// The innermost message on libhdf5's error stack, for the one-line error.
std::string hdf5_detail() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* out) -> herr_t {
        auto* s = static_cast<std::string*>(out);
        if (s->empty() && e->desc) *s = e->desc;
        return 0;
      },
      &msg);
  H5Eclear2(H5E_DEFAULT);
  std::replace(msg.begin(), msg.end(), '\n', ' ');  // errors are one line
  return msg.empty() ? "" : " (" + msg + ")";
}

// RAII for every hid_t: the right H5?close for its kind.
class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), close_(o.close_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      close_ = o.close_;
    }
    return *this;
  }
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  // Closes and reports failure (files: this is where buffered data reaches the disk).
  herr_t close() {
    herr_t r = 0;
    if (id_ >= 0 && close_) r = close_(id_);
    id_ = H5I_INVALID_HID;
    return r;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

hid_t check(hid_t id, const std::string& what) {
  if (id < 0) throw Error(what + hdf5_detail());
  return id;
}
void check_status(herr_t r, const std::string& what) {
  if (r < 0) throw Error(what + hdf5_detail());
}

Handle type_handle(hid_t id, const std::string& what) { return Handle(check(id, what), H5Tclose); }
Handle space_handle(hid_t id, const std::string& what) { return Handle(check(id, what), H5Sclose); }
Handle plist_handle(hid_t id, const std::string& what) { return Handle(check(id, what), H5Pclose); }

// IEEE binary16 the way h5py builds it, so h5py reads our f16 datasets as numpy float16.
Handle make_f16_type() {
  Handle t = type_handle(H5Tcopy(H5T_IEEE_F32LE), "HDF5: cannot copy a float type");
  check_status(H5Tset_fields(t.get(), 15, 10, 5, 0, 10), "HDF5: cannot build the f16 type");
  check_status(H5Tset_size(t.get(), 2), "HDF5: cannot build the f16 type");
  check_status(H5Tset_ebias(t.get(), 15), "HDF5: cannot build the f16 type");
  return t;
}

// h5py's bool: an int8 enum with members FALSE=0, TRUE=1.
Handle make_bool_type() {
  Handle t = type_handle(H5Tenum_create(H5T_NATIVE_INT8), "HDF5: cannot build the bool type");
  const std::int8_t f = 0, tr = 1;
  check_status(H5Tenum_insert(t.get(), "FALSE", &f), "HDF5: cannot build the bool type");
  check_status(H5Tenum_insert(t.get(), "TRUE", &tr), "HDF5: cannot build the bool type");
  return t;
}

// The little-endian type our bytes are in, for a dtype (also the on-disk type we write).
Handle type_for(DType t) {
  hid_t base = H5I_INVALID_HID;
  switch (t) {
    case DType::f32: base = H5T_IEEE_F32LE; break;
    case DType::f64: base = H5T_IEEE_F64LE; break;
    case DType::f16: return make_f16_type();
    case DType::bf16: base = H5T_STD_U16LE; break;
    case DType::i8: base = H5T_STD_I8LE; break;
    case DType::i16: base = H5T_STD_I16LE; break;
    case DType::i32: base = H5T_STD_I32LE; break;
    case DType::i64: base = H5T_STD_I64LE; break;
    case DType::u8: base = H5T_STD_U8LE; break;
    case DType::u16: base = H5T_STD_U16LE; break;
    case DType::u32: base = H5T_STD_U32LE; break;
    case DType::u64: base = H5T_STD_U64LE; break;
    case DType::boolean: return make_bool_type();
  }
  return type_handle(H5Tcopy(base), "HDF5: cannot copy a type");
}

void write_string_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& where) {
  Handle type = type_handle(H5Tcopy(H5T_C_S1), where + ": cannot build a string type");
  check_status(H5Tset_size(type.get(), H5T_VARIABLE), where + ": cannot build a string type");
  check_status(H5Tset_cset(type.get(), H5T_CSET_UTF8), where + ": cannot build a string type");
  Handle space = space_handle(H5Screate(H5S_SCALAR), where + ": cannot create a dataspace");
  Handle attr(check(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    where + ": cannot create attribute '" + name + "'"),
              H5Aclose);
  const char* p = value.c_str();
  check_status(H5Awrite(attr.get(), type.get(), &p), where + ": cannot write attribute '" + name + "'");
}

template <typename T>
void write_scalar_attr(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type, T value,
                       const std::string& where) {
  Handle space = space_handle(H5Screate(H5S_SCALAR), where + ": cannot create a dataspace");
  Handle attr(check(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    where + ": cannot create attribute '" + name + "'"),
              H5Aclose);
  check_status(H5Awrite(attr.get(), mem_type, &value), where + ": cannot write attribute '" + name + "'");
}

// Reads a scalar attribute of string or numeric type as text; nullopt for anything else.
std::optional<std::string> read_attr_text(hid_t attr, const std::string& where, const std::string& name) {
  Handle ftype = type_handle(H5Aget_type(attr), where + ": attribute '" + name + "': no type");
  Handle space = space_handle(H5Aget_space(attr), where + ": attribute '" + name + "': no dataspace");
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return std::nullopt;
  const H5T_class_t cls = H5Tget_class(ftype.get());
  if (cls == H5T_STRING) {
    if (H5Tis_variable_str(ftype.get()) > 0) {
      Handle mtype = type_handle(H5Tcopy(H5T_C_S1), where + ": cannot build a string type");
      H5Tset_size(mtype.get(), H5T_VARIABLE);
      H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
      char* p = nullptr;
      check_status(H5Aread(attr, mtype.get(), &p), where + ": cannot read attribute '" + name + "'");
      std::string s = p ? p : "";
      H5free_memory(p);
      return s;
    }
    const std::size_t n = H5Tget_size(ftype.get());
    std::string s(n, '\0');
    check_status(H5Aread(attr, ftype.get(), s.data()), where + ": cannot read attribute '" + name + "'");
    s.resize(std::strlen(s.c_str()));
    while (!s.empty() && s.back() == ' ') s.pop_back();  // space-padded fixed strings
    return s;
  }
  if (cls == H5T_INTEGER) {
    std::int64_t v = 0;
    check_status(H5Aread(attr, H5T_NATIVE_INT64, &v), where + ": cannot read attribute '" + name + "'");
    return std::to_string(v);
  }
  if (cls == H5T_FLOAT) {
    double v = 0;
    check_status(H5Aread(attr, H5T_NATIVE_DOUBLE, &v), where + ": cannot read attribute '" + name + "'");
    std::array<char, 64> buf{};
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), v);
    return std::string(buf.data(), r.ptr);
  }
  return std::nullopt;
}

// Which of our dtypes a dataset's on-disk type holds; throws for types wsm does not model.
DType dtype_of(hid_t dset, hid_t ftype, const std::string& where) {
  const std::size_t size = H5Tget_size(ftype);
  switch (H5Tget_class(ftype)) {
    case H5T_FLOAT: {
      if (size == 4) return DType::f32;
      if (size == 8) return DType::f64;
      std::size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
      H5Tget_fields(ftype, &spos, &epos, &esize, &mpos, &msize);
      if (size == 2 && esize == 5 && msize == 10) return DType::f16;
      if (size == 2 && esize == 8 && msize == 7) return DType::bf16;
      break;
    }
    case H5T_INTEGER: {
      const bool is_signed = H5Tget_sign(ftype) == H5T_SGN_2;
      if (size == 2 && H5Aexists(dset, "wsm_dtype") > 0) {
        Handle a(check(H5Aopen(dset, "wsm_dtype", H5P_DEFAULT), where + ": cannot open attribute wsm_dtype"),
                 H5Aclose);
        const auto v = read_attr_text(a.get(), where, "wsm_dtype");
        if (v && *v == "bf16") return DType::bf16;
      }
      switch (size) {
        case 1: return is_signed ? DType::i8 : DType::u8;
        case 2: return is_signed ? DType::i16 : DType::u16;
        case 4: return is_signed ? DType::i32 : DType::u32;
        case 8: return is_signed ? DType::i64 : DType::u64;
        default: break;
      }
      break;
    }
    case H5T_ENUM:
      if (size == 1) return DType::boolean;
      break;
    default: break;
  }
  throw Error(where + ": unsupported HDF5 element type (class " + std::to_string(int(H5Tget_class(ftype))) +
              ", " + std::to_string(size) + " bytes)");
}

// Selects the flat (row-major) element range [a, b) of a dataspace of shape `dims` as a union of
// at most 2*rank hyperslabs; HDF5 transfers a selection in row-major order, so the elements
// arrive in flat order.
void select_flat_range(hid_t space, const std::vector<hsize_t>& dims, hsize_t a, hsize_t b, const std::string& where) {
  const std::size_t rank = dims.size();
  std::vector<hsize_t> start(rank, 0), count(rank, 1);
  bool first = true;
  const auto add = [&](std::size_t d) {
    // Dims before d are fixed in `start`; dim d uses start[d]/count[d]; dims after d are full.
    std::vector<hsize_t> s(start), c(rank, 1);
    c[d] = count[d];
    for (std::size_t k = d + 1; k < rank; ++k) {
      s[k] = 0;
      c[k] = dims[k];
    }
    check_status(H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, s.data(), nullptr, c.data(),
                                     nullptr),
                 where + ": cannot select a range");
    first = false;
  };
  std::function<void(std::size_t, hsize_t, hsize_t)> rec = [&](std::size_t d, hsize_t lo, hsize_t hi) {
    if (lo >= hi) return;
    hsize_t inner = 1;
    for (std::size_t k = d + 1; k < rank; ++k) inner *= dims[k];
    hsize_t i0 = lo / inner;
    const hsize_t i1 = (hi - 1) / inner;
    if (i0 == i1 && d + 1 < rank && !(lo % inner == 0 && hi - lo == inner)) {
      start[d] = i0;
      rec(d + 1, lo - i0 * inner, hi - i0 * inner);
      return;
    }
    if (lo % inner != 0) {  // partial leading row
      start[d] = i0;
      rec(d + 1, lo % inner, inner);
      ++i0;
    }
    const hsize_t full_end = hi / inner;
    if (full_end > i0) {
      start[d] = i0;
      count[d] = full_end - i0;
      add(d);
      count[d] = 1;
    }
    if (hi % inner != 0 && hi / inner >= i0) {  // partial trailing row
      start[d] = hi / inner;
      rec(d + 1, 0, hi % inner);
    }
  };
  rec(0, a, b);
}

struct DatasetInfo {
  TensorInfo info;
  std::string path;  // full HDF5 path of the dataset
  std::vector<hsize_t> dims;
};

// Moves elements [e0, e1) of a dataset between HDF5 and `buf` (read or write).
void transfer_elements(hid_t dset, hid_t mem_type, const DatasetInfo& d, hsize_t e0, hsize_t e1, void* buf,
                       bool write, const std::string& where) {
  if (e0 >= e1) return;
  if (d.dims.empty()) {  // scalar dataset
    const herr_t r = write ? H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)
                           : H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    check_status(r, where + (write ? ": write failed" : ": read failed (truncated or corrupt file?)"));
    return;
  }
  Handle fspace = space_handle(H5Dget_space(dset), where + ": no dataspace");
  select_flat_range(fspace.get(), d.dims, e0, e1, where);
  const hsize_t n = e1 - e0;
  Handle mspace = space_handle(H5Screate_simple(1, &n, nullptr), where + ": cannot create a dataspace");
  const herr_t r = write ? H5Dwrite(dset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, buf)
                         : H5Dread(dset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, buf);
  check_status(r, where + (write ? ": write failed" : ": read failed (truncated or corrupt file?)"));
}

// Byte range [offset, offset+n) of a tensor as whole elements plus at most two partial ones.
// `full` handles the element-aligned middle; `partial` one element that is only partly covered.
template <typename Full, typename Partial>
void split_bytes(std::uint64_t offset, std::uint64_t n, std::uint64_t es, Full full, Partial partial) {
  const std::uint64_t end = offset + n;
  const std::uint64_t first_full = (offset + es - 1) / es, last_full = end / es;
  if (first_full < last_full) full(first_full, last_full, first_full * es - offset);
  if (offset % es != 0) partial(offset / es);
  if (end % es != 0 && (end / es != offset / es || offset % es == 0)) partial(end / es);
}

std::string range_error(const std::string& where, std::uint64_t offset, std::uint64_t n, std::uint64_t nbytes) {
  return where + ": byte range [" + std::to_string(offset) + ", " + std::to_string(offset + n) + ") outside its " +
         std::to_string(nbytes) + " bytes";
}

// One tensor as the helper process describes it.
struct Hdf5Entry {
  TensorInfo info;
  std::optional<std::uint64_t> offset;  // where its bytes lie in the file as-is (contiguous, unfiltered)
};

constexpr std::uint64_t kMaxReadBytes = 16u << 20;       // per request to the helper
constexpr std::uint64_t kMaxManifestBytes = 256u << 20;  // the manifest of ~1M tensors
std::atomic<std::int64_t> g_helper_timeout_ms{60'000};  // per request; a hang ends in an error
std::chrono::milliseconds helper_timeout() { return std::chrono::milliseconds(g_helper_timeout_ms.load()); }

// Runs in the helper process only (see open_hdf5): everything libhdf5 does with a file it reads.
// Foreign files are untrusted, and libhdf5 can crash or hang on corrupt metadata, so wsm's own
// process never parses them: it asks this class, across a ChildWorker, for a JSON manifest and
// for the element ranges it cannot map.
class Hdf5Inspector {
 public:
  explicit Hdf5Inspector(fs::path path) : path_(std::move(path)) {
    const std::string where = path_.string();
    if (H5Fis_hdf5(path_.c_str()) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      throw Error(where + ": not an HDF5 file (bad signature or truncated)");
    }
    Handle fapl = plist_handle(H5Pcreate(H5P_FILE_ACCESS), where + ": cannot create a property list");
    H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
    file_ = Handle(check(H5Fopen(path_.c_str(), H5F_ACC_RDONLY, fapl.get()),
                         where + ": cannot open HDF5 file (truncated or corrupt)"),
                   H5Fclose);
    read_meta();
    if (wsm_layout_) list_wsm_tensors();
    else list_all_datasets();
    open_.resize(datasets_.size());
  }

  // {"meta": {key: text}, "tensors": [{"name", "path", "dtype", "shape", "offset" (or null)}]}
  std::string manifest() {
    nlohmann::json tensors = nlohmann::json::array();
    for (std::size_t i = 0; i < datasets_.size(); ++i) {
      const DatasetInfo& d = datasets_[i];
      nlohmann::json t = {{"name", d.info.name}, {"path", d.path}, {"dtype", dtype_name(d.info.dtype)},
                          {"shape", d.dims}, {"offset", nullptr}};
      if (const auto at = locate_in_file(i)) t["offset"] = *at;
      tensors.push_back(std::move(t));
    }
    // Names and attributes that are not UTF-8 get U+FFFD for the bad bytes (reads go by index).
    return nlohmann::json{{"meta", extra_}, {"tensors", std::move(tensors)}}.dump(
        -1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  // Elements [e0, e1) of dataset i, as little-endian bytes (bool: as stored).
  std::string read_elements(std::size_t i, std::uint64_t e0, std::uint64_t e1) {
    if (i >= datasets_.size()) throw Error(path_.string() + ": no dataset #" + std::to_string(i));
    const DatasetInfo& d = datasets_[i];
    const std::string where = path_.string() + ": tensor '" + d.info.name + "'";
    const std::uint64_t es = dtype_size(d.info.dtype);
    if (e0 > e1 || e1 > d.info.numel() || e1 - e0 > kMaxReadBytes / es)
      throw Error(where + ": bad element range [" + std::to_string(e0) + ", " + std::to_string(e1) + ")");
    std::string out((e1 - e0) * es, '\0');
    auto& [dset, mtype] = open_dataset(i, where);
    transfer_elements(dset.get(), mtype.get(), d, e0, e1, out.data(), false, where);
    return out;
  }

 private:
  // Where a dataset's bytes lie in the file, when they lie there as-is: contiguous layout, no
  // filters, stored in exactly our little-endian element type, storage allocated.
  std::optional<std::uint64_t> locate_in_file(std::size_t i) {
    const DatasetInfo& d = datasets_[i];
    const std::string where = path_.string() + ": tensor '" + d.info.name + "'";
    if (d.info.dtype == DType::boolean || d.info.nbytes() == 0) return std::nullopt;
    auto& [dset, mtype] = open_dataset(i, where);
    Handle dcpl = plist_handle(H5Dget_create_plist(dset.get()), where + ": cannot read its creation properties");
    if (H5Pget_layout(dcpl.get()) != H5D_CONTIGUOUS || H5Pget_nfilters(dcpl.get()) != 0) return std::nullopt;
    Handle ftype = type_handle(H5Dget_type(dset.get()), where + ": no type");
    if (H5Tequal(ftype.get(), mtype.get()) <= 0) return std::nullopt;
    const haddr_t at = H5Dget_offset(dset.get());
    if (at == HADDR_UNDEF) {  // never written: read() gives the fill value
      H5Eclear2(H5E_DEFAULT);
      return std::nullopt;
    }
    return std::uint64_t(at);
  }

  std::pair<Handle, Handle>& open_dataset(std::size_t i, const std::string& where) {
    auto& slot = open_[i];
    if (!slot.first.valid()) {
      slot.first = Handle(check(H5Dopen2(file_.get(), datasets_[i].path.c_str(), H5P_DEFAULT),
                                where + ": cannot open dataset " + datasets_[i].path),
                          H5Dclose);
      if (datasets_[i].info.dtype == DType::boolean)
        slot.second = type_handle(H5Dget_type(slot.first.get()), where + ": no type");  // bytes as stored
      else
        slot.second = type_for(datasets_[i].info.dtype);
    }
    return slot;
  }

  void read_meta() {
    const std::string where = path_.string();
    H5O_info_t oinfo{};
    check_status(H5Oget_info2(file_.get(), &oinfo, H5O_INFO_NUM_ATTRS), where + ": cannot read the root group");
    for (hsize_t i = 0; i < oinfo.num_attrs; ++i) {
      Handle attr(check(H5Aopen_by_idx(file_.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT),
                        where + ": cannot open a root attribute"),
                  H5Aclose);
      const ssize_t len = H5Aget_name(attr.get(), 0, nullptr);
      if (len < 0) throw Error(where + ": cannot read a root attribute's name" + hdf5_detail());
      std::string name(static_cast<std::size_t>(len), '\0');
      H5Aget_name(attr.get(), name.size() + 1, name.data());
      const auto text = read_attr_text(attr.get(), where, name);
      if (name == "wsm.format_version") {
        wsm_layout_ = true;
        if (!text || *text != std::to_string(kHdf5FormatVersion))
          throw Error(where + ": unsupported wsm HDF5 format version " + text.value_or("?") + " (this build reads " +
                      std::to_string(kHdf5FormatVersion) + ")");
        continue;
      }
      if (!text) continue;  // a non-scalar or unsupported attribute type: not metadata wsm knows
      extra_[name] = *text;
    }
  }

  // Refuses storage the mapped path must not follow: data in other files (external storage, virtual
  // datasets) would let a checkpoint pull in any local file's bytes.
  void check_layout(hid_t dset, const std::string& where) {
    Handle dcpl = plist_handle(H5Dget_create_plist(dset), where + ": cannot read its creation properties");
    if (H5Pget_external_count(dcpl.get()) != 0)
      throw Error(where + ": stored in external files (HDF5 external storage), which wsm refuses to follow");
    const H5D_layout_t layout = H5Pget_layout(dcpl.get());
    if (layout == H5D_VIRTUAL)
      throw Error(where + ": a virtual dataset (data in other files), which wsm refuses to follow");
    if (layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED && layout != H5D_COMPACT)
      throw Error(where + ": unsupported HDF5 storage layout " + std::to_string(int(layout)) + hdf5_detail());
  }

  DatasetInfo describe(const std::string& path, std::string name) {
    const std::string where = path_.string() + ": dataset " + path;
    Handle dset(check(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), where + ": cannot open"), H5Dclose);
    check_layout(dset.get(), where);
    Handle ftype = type_handle(H5Dget_type(dset.get()), where + ": no type");
    Handle space = space_handle(H5Dget_space(dset.get()), where + ": no dataspace");
    DatasetInfo d;
    d.path = path;
    d.info.name = std::move(name);
    d.info.dtype = dtype_of(dset.get(), ftype.get(), where);
    if (H5Sget_simple_extent_type(space.get()) == H5S_NULL) throw Error(where + ": empty (null) dataspace");
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0) throw Error(where + ": bad dataspace" + hdf5_detail());
    d.dims.resize(static_cast<std::size_t>(rank));
    if (rank > 0) check_status(H5Sget_simple_extent_dims(space.get(), d.dims.data(), nullptr), where + ": bad dataspace");
    std::uint64_t bytes = dtype_size(d.info.dtype);
    for (auto v : d.dims) {
      if (v > std::uint64_t(INT64_MAX) || __builtin_mul_overflow(bytes, v, &bytes))
        throw Error(where + ": shape overflows 64 bits");
      d.info.shape.push_back(static_cast<std::int64_t>(v));
    }
    return d;
  }

  void list_wsm_tensors() {
    const std::string where = path_.string();
    if (H5Lexists(file_.get(), "tensors", H5P_DEFAULT) <= 0)
      throw Error(where + ": a wsm HDF5 checkpoint (wsm.format_version is set) without the /tensors group");
    Handle group(check(H5Gopen2(file_.get(), "tensors", H5P_DEFAULT), where + ": cannot open /tensors"), H5Gclose);
    Handle gcpl = plist_handle(H5Gget_create_plist(group.get()), where + ": cannot read /tensors");
    unsigned flags = 0;
    H5Pget_link_creation_order(gcpl.get(), &flags);
    const H5_index_t order = (flags & H5P_CRT_ORDER_INDEXED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    std::vector<std::string> names;
    check_status(H5Literate(
                     group.get(), order, H5_ITER_INC, nullptr,
                     [](hid_t, const char* n, const H5L_info_t*, void* out) -> herr_t {
                       static_cast<std::vector<std::string>*>(out)->emplace_back(n);
                       return 0;
                     },
                     &names),
                 where + ": cannot list /tensors");
    for (const auto& n : names) datasets_.push_back(describe("/tensors/" + n, hdf5_unescape_name(n)));
  }

  void list_all_datasets() {
    const std::string where = path_.string();
    std::vector<std::string> paths;
    check_status(H5Ovisit2(
                     file_.get(), H5_INDEX_NAME, H5_ITER_INC,
                     [](hid_t, const char* n, const H5O_info_t* info, void* out) -> herr_t {
                       if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(out)->emplace_back(n);
                       return 0;
                     },
                     &paths, H5O_INFO_BASIC),
                 where + ": cannot list datasets");
    for (const auto& p : paths) datasets_.push_back(describe("/" + p, p));
  }

  fs::path path_;
  Handle file_;
  bool wsm_layout_ = false;
  std::map<std::string, std::string> extra_;
  std::vector<DatasetInfo> datasets_;
  std::vector<std::pair<Handle, Handle>> open_;  // dataset, memory type; opened on first use
};

// Requests to the helper process, one layout for all: kind, u64 id, i, e0, e1, then the path.
//   'O' opens `path` as file `id` and answers its manifest;
//   'R' answers elements [e0, e1) of dataset i of file `id` (opening `path` as `id` first when this
//       helper does not hold it: a fresh helper, after the last one died on another file);
//   'C' forgets file `id`.
struct HelperRequest {
  char kind = 0;
  std::array<std::uint64_t, 4> v{};  // id, i, e0, e1
  std::string path;
};

std::string encode(const HelperRequest& r) {
  std::string out(1 + sizeof r.v, r.kind);
  std::memcpy(out.data() + 1, r.v.data(), sizeof r.v);
  return out + r.path;
}

HelperRequest decode(std::string_view req) {
  HelperRequest r;
  if (req.size() < 1 + sizeof r.v) throw Error("hdf5 helper: malformed request");
  r.kind = req[0];
  std::memcpy(r.v.data(), req.data() + 1, sizeof r.v);
  r.path = req.substr(1 + sizeof r.v);
  return r;
}

// The helper process's request handler; the files it holds open live in the helper only.
ChildWorker::Serve hdf5_serve() {
  using Files = std::unordered_map<std::uint64_t, std::unique_ptr<Hdf5Inspector>>;
  return [files = std::make_shared<Files>()](std::string_view text) -> std::string {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    H5PLset_loading_state(0);  // a file must not make libhdf5 load filter plugins
    const HelperRequest r = decode(text);
    const std::uint64_t id = r.v[0];
    if (r.kind == 'C') {
      files->erase(id);
      return "";
    }
    if (r.kind != 'O' && r.kind != 'R') throw Error("hdf5 helper: unknown request");
    auto it = files->find(id);
    if (r.kind == 'O' || it == files->end()) {
      auto file = std::make_unique<Hdf5Inspector>(r.path);  // not kept when opening fails
      it = files->insert_or_assign(id, std::move(file)).first;
    }
    if (r.kind == 'O') return it->second->manifest();
    return it->second->read_elements(r.v[1], r.v[2], r.v[3]);
  };
}

// The helper process every reader alive at once shares (and leases hold): started by the first
// request, restarted after a death, killed when the last holder is gone.
class Hdf5Helper {
 public:
  Hdf5Helper()
      : worker_(hdf5_serve(), [](const std::function<void()>& fork) {
          const Lock lock(hdf5_lock());  // forked while no thread of ours is inside libhdf5
          fork();
        }) {}
  ChildWorker& worker() { return worker_; }
  std::uint64_t new_file_id() { return ++last_id_; }

 private:
  ChildWorker worker_;
  std::atomic<std::uint64_t> last_id_{0};
};

std::shared_ptr<Hdf5Helper> shared_hdf5_helper() {
  static std::mutex mutex;
  static std::weak_ptr<Hdf5Helper> current;
  const std::lock_guard lock(mutex);
  auto helper = current.lock();
  if (!helper) {
    helper = std::make_shared<Hdf5Helper>();
    current = helper;
  }
  return helper;
}

// One file as the shared helper holds it; forgotten there when this goes.
class HelperFile {
 public:
  explicit HelperFile(fs::path path) : helper_(shared_hdf5_helper()), id_(helper_->new_file_id()), path_(std::move(path)) {}
  ~HelperFile() {
    if (!helper_->worker().running()) return;  // the helper that held it is gone; don't start one
    try {
      call('C', 0, 0, 0, 0);
    } catch (const Error&) {
    }
  }
  HelperFile(const HelperFile&) = delete;
  HelperFile& operator=(const HelperFile&) = delete;

  std::string manifest() { return call('O', 0, 0, 0, kMaxManifestBytes); }
  std::string elements(std::uint64_t i, std::uint64_t e0, std::uint64_t e1, std::uint64_t bytes) {
    return call('R', i, e0, e1, bytes);
  }

 private:
  std::string call(char kind, std::uint64_t i, std::uint64_t e0, std::uint64_t e1, std::uint64_t max_reply) {
    const std::string req = encode({kind, {id_, i, e0, e1}, kind == 'C' ? std::string() : path_.string()});
    return helper_->worker().call(path_.string(), req, helper_timeout(), max_reply);
  }

  std::shared_ptr<Hdf5Helper> helper_;
  std::uint64_t id_;
  fs::path path_;
};

// Parses the helper's manifest, trusting nothing in it: names, dtypes, shapes and offsets are
// checked as if they came from the file itself.
std::vector<Hdf5Entry> parse_manifest(const std::string& text, const std::string& where,
                                      std::map<std::string, std::string>& extra) {
  std::vector<Hdf5Entry> out;
  try {
    const auto doc = nlohmann::json::parse(text);
    extra = doc.at("meta").get<std::map<std::string, std::string>>();
    for (const auto& t : doc.at("tensors")) {
      Hdf5Entry e;
      e.info.name = t.at("name").get<std::string>();
      const auto dtype = parse_dtype(t.at("dtype").get<std::string>());
      if (!dtype) throw Error(where + ": helper named an unknown dtype");
      e.info.dtype = *dtype;
      std::uint64_t bytes = dtype_size(e.info.dtype);
      for (const auto& v : t.at("shape")) {
        const auto dim = v.get<std::uint64_t>();
        if (dim > std::uint64_t(INT64_MAX) || __builtin_mul_overflow(bytes, dim, &bytes))
          throw Error(where + ": dataset " + printable(e.info.name) + ": shape overflows 64 bits");
        e.info.shape.push_back(static_cast<std::int64_t>(dim));
      }
      if (!t.at("offset").is_null()) e.offset = t.at("offset").get<std::uint64_t>();
      out.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": the HDF5 helper process sent a malformed manifest (" + e.what() + ")");
  }
  return out;
}

// The reader in wsm's own process: the manifest comes from the helper; bytes come from the
// mapping when they lie in the file as-is, otherwise from the helper, a bounded piece at a time.
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
      if (!index_.emplace(e.info.name, i).second) throw Error(where + ": duplicate tensor name '" + printable(e.info.name) + "'");
      if (!e.offset) continue;
      if (!file_map_) file_map_ = std::make_unique<MappedFile>(path_);
      const std::uint64_t size = file_map_->bytes().size();
      if (*e.offset > size || e.info.nbytes() > size - *e.offset)
        throw Error(where + ": tensor '" + printable(e.info.name) + "': its data (" + std::to_string(e.info.nbytes()) +
                    " bytes at offset " + std::to_string(*e.offset) + ") runs past the end of the file (truncated?)");
    }
    // Every byte mapped (wsm's own uncompressed files): the helper is not needed any more.
    if (std::all_of(entries_.begin(), entries_.end(), [](const Hdf5Entry& e) { return e.offset || e.info.nbytes() == 0; }))
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
    Handle space = s.d.dims.empty()
                       ? space_handle(H5Screate(H5S_SCALAR), where + ": cannot create a dataspace")
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
    if (!index_.emplace(t.name, datasets_.size()).second) throw Error(where_ + ": duplicate tensor name '" + t.name + "'");
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

std::string hdf5_escape_name(const std::string& name) {
  if (name == ".") return "%2E";
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c == '%') out += "%25";
    else if (c == '/') out += "%2F";
    else out += c;
  }
  return out;
}

std::string hdf5_unescape_name(const std::string& s) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

bool looks_like_hdf5(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<char, 8> sig{};
  in.read(sig.data(), sig.size());
  return in.gcount() == 8 && std::memcmp(sig.data(), "\x89HDF\r\n\x1a\n", 8) == 0;
}

void set_hdf5_helper_timeout(std::chrono::milliseconds limit) { g_helper_timeout_ms = limit.count(); }

Hdf5HelperLease hold_hdf5_helper() { return Hdf5HelperLease(shared_hdf5_helper()); }

std::unique_ptr<CheckpointReader> open_hdf5(const fs::path& path) { return std::make_unique<Hdf5Reader>(path); }

std::unique_ptr<CheckpointWriter> create_hdf5(const fs::path& path, const CheckpointMeta& meta,
                                              const std::vector<TensorInfo>& tensors, const WriteOptions& options) {
  return std::make_unique<Hdf5Writer>(path, meta, tensors, options);
}

}  // namespace wsm
