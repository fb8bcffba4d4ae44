#pragma once
// A view of some element ranges of a checkpoint's tensors, each shown as a whole 1-D tensor of the
// same name, so the merge engine merges a rank's share (work_split.h) as if it were a checkpoint:
// reads and mapped bytes are those of the range only, from the underlying reader.
#include <map>
#include <memory>
#include <vector>

#include "merger/offline/work_split.h"
#include "wsm/formats/checkpoint.h"

namespace wsm::merger {

class SliceReader final : public CheckpointReader {
 public:
  // `slices` index `names` (the merge plan's tensor names); at most one slice per tensor.
  SliceReader(CheckpointReader& base, const std::vector<TensorSlice>& slices, const std::vector<TensorInfo>& names);
  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  const CheckpointMeta& meta() const override { return base_.meta(); }
  std::string format() const override { return base_.format(); }
  const std::filesystem::path& path() const override { return base_.path(); }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override;
  std::optional<std::span<const std::byte>> mapped(const std::string& name) override;

 private:
  std::uint64_t byte_begin(const std::string& name) const;

  CheckpointReader& base_;
  std::vector<TensorInfo> infos_;
  std::map<std::string, std::uint64_t> begin_;  // tensor -> first byte of its slice in the base tensor
};

}  // namespace wsm::merger
