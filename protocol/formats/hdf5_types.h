#pragma once
// wsm's dtypes as HDF5 types (h5py's f16 and bool included), attributes, and flat element ranges of
// a dataset. Internal to protocol/formats; every call here expects the caller to hold hdf5_lock().
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "protocol/formats/hdf5_library.h"
#include "wsm/formats/checkpoint.h"

namespace wsm::hdf5 {

struct DatasetInfo {
  TensorInfo info;
  std::string path;  // full HDF5 path of the dataset
  std::vector<hsize_t> dims;
};

// IEEE binary16 the way h5py builds it, so h5py reads our f16 datasets as numpy float16.
Handle make_f16_type();
// h5py's bool: an int8 enum with members FALSE=0, TRUE=1.
Handle make_bool_type();
// The little-endian type our bytes are in, for a dtype (also the on-disk type we write).
Handle type_for(DType t);
void write_string_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& where);
// Reads a scalar attribute of string or numeric type as text; nullopt for anything else.
std::optional<std::string> read_attr_text(hid_t attr, const std::string& where, const std::string& name);
// Which of our dtypes a dataset's on-disk type holds; throws for types wsm does not model.
DType dtype_of(hid_t dset, hid_t ftype, const std::string& where);
// Selects the flat (row-major) element range [a, b) of a dataspace of shape `dims` as a union of
// at most 2*rank hyperslabs; HDF5 transfers a selection in row-major order, so the elements
// arrive in flat order.
void select_flat_range(hid_t space, const std::vector<hsize_t>& dims, hsize_t a, hsize_t b, const std::string& where);
// Moves elements [e0, e1) of a dataset between HDF5 and `buf` (read or write).
void transfer_elements(hid_t dset, hid_t mem_type, const DatasetInfo& d, hsize_t e0, hsize_t e1, void* buf, bool write,
                       const std::string& where);
std::string range_error(const std::string& where, std::uint64_t offset, std::uint64_t n, std::uint64_t nbytes);

template <typename T>
void write_scalar_attr(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type, T value,
                       const std::string& where) {
  Handle space = space_handle(H5Screate(H5S_SCALAR), where + ": cannot create a dataspace");
  Handle attr(check(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                    where + ": cannot create attribute '" + name + "'"),
              H5Aclose);
  check_status(H5Awrite(attr.get(), mem_type, &value), where + ": cannot write attribute '" + name + "'");
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

}  // namespace wsm::hdf5
