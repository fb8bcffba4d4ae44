#pragma once
// Fills byte ranges of tensors in an output laid out up front by another writer (its layout():
// files already created and sized, each tensor's offset known), with pwrite. Several of these, in
// several processes, fill disjoint ranges of one output side by side (`wsm merge` under MPI); the
// output's own writer then publishes it. Each checks only its own ranges.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

// Bytes [begin, begin + size) of one tensor.
struct TensorByteRange {
  std::string tensor;
  std::uint64_t begin = 0, size = 0;
};

class RangeFileWriter final : public CheckpointWriter {
 public:
  // Opens (never creates) every file of `layout` that holds one of `ranges`. write() takes offsets
  // relative to the range's begin, so a writer sees each range as a whole tensor of `size` bytes.
  RangeFileWriter(const std::vector<LaidOutFile>& layout, const std::vector<TensorByteRange>& ranges);
  ~RangeFileWriter() override;
  RangeFileWriter(const RangeFileWriter&) = delete;
  RangeFileWriter& operator=(const RangeFileWriter&) = delete;

  void write(const std::string& name, std::uint64_t offset, std::span<const std::byte> src) override;
  // Checks every byte of every range was written, fsyncs and closes the files. Idempotent.
  void prepare() override;
  // The same as prepare(): publishing the output is its owner's job.
  void commit() override { prepare(); }

 private:
  struct Target {
    int fd = -1;  // index into fds_
    std::uint64_t at = 0, size = 0, written = 0;  // absolute file offset of the range's first byte
    std::string where;
  };
  std::vector<int> fds_;
  std::vector<std::string> paths_;
  std::map<std::string, Target> targets_;
  bool prepared_ = false;
};

}  // namespace wsm
