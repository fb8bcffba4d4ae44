#include "protocol/formats/hdf5_types.h"

#include <array>
#include <charconv>
#include <functional>

#include "wsm/core/error.h"
#include "wsm/core/printable.h"

namespace wsm::hdf5 {
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
        Handle a(check(H5Aopen(dset, "wsm_dtype", H5P_DEFAULT), where + ": cannot open attribute wsm_dtype"), H5Aclose);
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
  throw Error(where + ": unsupported HDF5 element type (class " + std::to_string(int(H5Tget_class(ftype))) + ", " +
              std::to_string(size) + " bytes)");
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
    check_status(
        H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, s.data(), nullptr, c.data(), nullptr),
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

// Moves elements [e0, e1) of a dataset between HDF5 and `buf` (read or write).
void transfer_elements(hid_t dset, hid_t mem_type, const DatasetInfo& d, hsize_t e0, hsize_t e1, void* buf, bool write,
                       const std::string& where) {
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

std::string range_error(const std::string& where, std::uint64_t offset, std::uint64_t n, std::uint64_t nbytes) {
  return where + ": byte range [" + std::to_string(offset) + ", " + std::to_string(offset + n) + ") outside its " +
         std::to_string(nbytes) + " bytes";
}
}  // namespace wsm::hdf5
