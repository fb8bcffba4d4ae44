#include "merger/offline/slice_reader.h"

#include "wsm/core/error.h"

namespace wsm::merger {

SliceReader::SliceReader(CheckpointReader& base, const std::vector<TensorSlice>& slices,
                         const std::vector<TensorInfo>& names)
    : base_(base) {
  for (const auto& s : slices) {
    const TensorInfo& full = base.info(names.at(s.tensor).name);
    if (s.begin > full.numel() || s.count > full.numel() - s.begin)
      throw Error(base.path().string() + ": tensor '" + full.name + "': slice outside its elements");
    infos_.push_back({full.name, full.dtype, {std::int64_t(s.count)}});
    if (!begin_.emplace(full.name, s.begin * dtype_size(full.dtype)).second)
      throw Error(base.path().string() + ": tensor '" + full.name + "' sliced twice");
  }
}

std::uint64_t SliceReader::byte_begin(const std::string& name) const {
  const auto it = begin_.find(name);
  if (it == begin_.end()) throw Error(base_.path().string() + ": tensor '" + name + "' is not in this rank's share");
  return it->second;
}

void SliceReader::read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) {
  const std::uint64_t size = info(name).nbytes();
  if (offset > size || dst.size() > size - offset)
    throw Error(base_.path().string() + ": tensor '" + name + "': read outside this rank's share");
  base_.read(name, byte_begin(name) + offset, dst);
}

std::optional<std::span<const std::byte>> SliceReader::mapped(const std::string& name) {
  const auto whole = base_.mapped(name);
  if (!whole) return std::nullopt;
  return whole->subspan(byte_begin(name), info(name).nbytes());
}

}  // namespace wsm::merger
