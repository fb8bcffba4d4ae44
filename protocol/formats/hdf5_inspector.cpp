#include "protocol/formats/hdf5_inspector.h"

#include <hdf5.h>

#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "protocol/formats/hdf5_helper_protocol.h"
#include "protocol/formats/hdf5_library.h"
#include "protocol/formats/hdf5_types.h"
#include "wsm/core/error.h"
#include "wsm/core/printable.h"
#include "wsm/formats/hdf5_checkpoint.h"

namespace fs = std::filesystem;

namespace wsm::hdf5 {

namespace {

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
    if (wsm_layout_)
      list_wsm_tensors();
    else
      list_all_datasets();
    open_.resize(datasets_.size());
  }

  // {"meta": {key: text}, "tensors": [{"name", "path", "dtype", "shape", "offset" (or null)}]}
  std::string manifest() {
    nlohmann::json tensors = nlohmann::json::array();
    for (std::size_t i = 0; i < datasets_.size(); ++i) {
      const DatasetInfo& d = datasets_[i];
      nlohmann::json t = {{"name", d.info.name},
                          {"path", d.path},
                          {"dtype", dtype_name(d.info.dtype)},
                          {"shape", d.dims},
                          {"offset", nullptr}};
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
    if (rank > 0)
      check_status(H5Sget_simple_extent_dims(space.get(), d.dims.data(), nullptr), where + ": bad dataspace");
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

}  // namespace

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

}  // namespace wsm::hdf5
