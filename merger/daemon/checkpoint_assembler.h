#pragma once
// Rebuilds one checkpoint from a peer's chunks and validates it against the run's manifest: chunks
// in manifest order without gaps or overlap, each with a matching XXH3, and at the end the byte
// count and the checksum chain of the whole (wire::ChecksumChain). Every fault is a wire::ProtocolError with the code to send back.
// Large payloads are kept as received (the ZeroMQ frame becomes the tensor's storage, no copy);
// small ones are copied, so that a tiny chunk does not pin the larger receive buffer it shares.
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "merger/daemon/stored_checkpoint.h"
#include "wsm/wire/wire.h"

namespace wsm::merger {

using Manifest = std::vector<TensorInfo>;

// A manifest from a Hello; throws ProtocolError(BAD_REQUEST) on empty/duplicate names, unknown
// dtypes, negative dimensions, or sizes (per tensor or in total) that overflow 64 bits.
std::shared_ptr<const Manifest> manifest_from_hello(const v1::Hello& hello);

class CheckpointAssembler {
 public:
  CheckpointAssembler(std::string run_id, std::shared_ptr<const Manifest> manifest, const v1::CheckpointBegin& begin);

  // Payloads below this size are copied rather than kept.
  static constexpr std::size_t kKeepFrameBytes = 64 << 10;

  // Takes the chunk's payload frame (kept or copied, see above).
  void add(const v1::TensorChunk& chunk, zmq::message_t payload);
  std::shared_ptr<StoredCheckpoint> finish(const v1::CheckpointEnd& end);

  std::int64_t step() const { return c_->step; }
  std::uint64_t received() const { return received_; }

 private:
  void skip_complete_tensors();

  std::shared_ptr<const Manifest> manifest_;
  std::shared_ptr<StoredCheckpoint> c_;
  std::size_t tensor_ = 0;   // the tensor the next chunk must belong to
  std::uint64_t offset_ = 0;  // and its offset
  std::uint64_t received_ = 0;
  wire::ChecksumChain whole_;
};

}  // namespace wsm::merger
