#include "tests/merger/merge_memory_reader.h"

#include <cstring>

#include "wsm/core/error.h"

namespace wsm::merger {

MemoryReader::MemoryReader(std::shared_ptr<const Checkpoint> checkpoint, std::filesystem::path name)
    : checkpoint_(std::move(checkpoint)), name_(std::move(name)) {
  for (const auto& t : checkpoint_->tensors) {
    if (t.data.size() != t.info.nbytes())
      throw Error(name_.string() + ": tensor '" + t.info.name + "' holds " + std::to_string(t.data.size()) +
                  " bytes, its shape and dtype need " + std::to_string(t.info.nbytes()));
    infos_.push_back(t.info);
  }
}

void MemoryReader::read(const std::string& name, std::uint64_t offset, std::span<std::byte> dst) {
  for (const auto& t : checkpoint_->tensors) {
    if (t.info.name != name) continue;
    if (offset > t.data.size() || dst.size() > t.data.size() - offset)
      throw Error(name_.string() + ": read of tensor '" + name + "' out of range");
    if (!dst.empty()) std::memcpy(dst.data(), t.data.data() + offset, dst.size());
    return;
  }
  throw Error(name_.string() + ": no tensor '" + name + "'");
}

}  // namespace wsm::merger
