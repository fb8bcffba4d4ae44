#pragma once
// A CheckpointReader over a checkpoint already in memory, so merge_checkpoints() takes in-memory
// inputs (the daemon's window, tests) exactly like files.
#include <filesystem>
#include <memory>

#include "wsm/formats/checkpoint.h"

namespace wsm::merger {

class MemoryReader final : public CheckpointReader {
 public:
  // `name` stands in for the path in error messages and provenance.
  MemoryReader(std::shared_ptr<const Checkpoint> checkpoint, std::filesystem::path name);

  const std::vector<TensorInfo>& tensors() const override { return infos_; }
  const CheckpointMeta& meta() const override { return checkpoint_->meta; }
  std::string format() const override { return "memory"; }
  const std::filesystem::path& path() const override { return name_; }
  void read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) override;

 private:
  std::shared_ptr<const Checkpoint> checkpoint_;
  std::filesystem::path name_;
  std::vector<TensorInfo> infos_;
};

}  // namespace wsm::merger
