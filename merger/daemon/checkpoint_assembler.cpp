#include "merger/daemon/checkpoint_assembler.h"

#include <algorithm>
#include <set>

namespace wsm::merger {

using wire::ProtocolError;

std::shared_ptr<const Manifest> manifest_from_hello(const v1::Hello& hello) {
  auto m = std::make_shared<Manifest>();
  std::set<std::string> names;
  std::uint64_t total = 0;
  for (const auto& spec : hello.manifest()) {
    if (spec.name().empty()) throw ProtocolError(v1::BAD_REQUEST, "manifest has a tensor with an empty name");
    if (!names.insert(spec.name()).second)
      throw ProtocolError(v1::BAD_REQUEST, "manifest lists tensor '" + spec.name() + "' twice");
    const auto dtype = parse_dtype(spec.dtype());
    if (!dtype)
      throw ProtocolError(v1::BAD_REQUEST, "tensor '" + spec.name() + "': unknown dtype '" + spec.dtype() + "'");
    TensorInfo info{spec.name(), *dtype, {spec.shape().begin(), spec.shape().end()}};
    for (auto d : info.shape)
      if (d < 0) throw ProtocolError(v1::BAD_REQUEST, "tensor '" + spec.name() + "': negative dimension");
    // Sizes are checked here, once, so that no later step meets a size that wraps around.
    std::uint64_t bytes = 0;
    try {
      bytes = info.nbytes();
    } catch (const Error& e) {
      throw ProtocolError(v1::BAD_REQUEST, e.what());
    }
    if (bytes > UINT64_MAX - total)
      throw ProtocolError(v1::BAD_REQUEST, "manifest: the checkpoint's total size overflows 64 bits at tensor '" +
                                               spec.name() + "'");
    total += bytes;
    m->push_back(std::move(info));
  }
  if (m->empty()) throw ProtocolError(v1::BAD_REQUEST, "hello with an empty manifest");
  return m;
}

CheckpointAssembler::CheckpointAssembler(std::string run_id, std::shared_ptr<const Manifest> manifest,
                                         const v1::CheckpointBegin& begin)
    : manifest_(std::move(manifest)), c_(std::make_shared<StoredCheckpoint>()) {
  c_->run_id = std::move(run_id);
  c_->step = begin.step();
  c_->tokens = begin.tokens();
  c_->lr = begin.lr();
  c_->tensors = *manifest_;
  c_->data.resize(manifest_->size());
  skip_complete_tensors();
}

void CheckpointAssembler::skip_complete_tensors() {
  while (tensor_ < manifest_->size() && offset_ == (*manifest_)[tensor_].nbytes()) {
    ++tensor_;
    offset_ = 0;
  }
}

void CheckpointAssembler::add(const v1::TensorChunk& chunk, zmq::message_t frame) {
  const std::span<const std::byte> payload(static_cast<const std::byte*>(frame.data()), frame.size());
  const auto where = "step " + std::to_string(c_->step) + ", tensor '" + chunk.name() + "'";
  if (chunk.length() != payload.size())
    throw ProtocolError(v1::MALFORMED, where + ": chunk says " + std::to_string(chunk.length()) +
                                           " bytes, payload frame has " + std::to_string(payload.size()));
  // Chunks come in manifest order, so the expected tensor is checked first: ingest stays linear in
  // the tensor count. The search runs only for a chunk that is out of order or unknown, which
  // rejects the checkpoint just below.
  std::size_t index = tensor_;
  if (index >= manifest_->size() || (*manifest_)[index].name != chunk.name()) {
    index = manifest_->size();
    for (std::size_t i = 0; i < manifest_->size(); ++i)
      if ((*manifest_)[i].name == chunk.name()) index = i;
  }
  if (index == manifest_->size()) throw ProtocolError(v1::UNKNOWN_TENSOR, where + ": not in the run's manifest");
  const auto nbytes = (*manifest_)[index].nbytes();
  if (chunk.offset() + chunk.length() > nbytes || chunk.offset() + chunk.length() < chunk.offset())
    throw ProtocolError(v1::MANIFEST_MISMATCH, where + ": " + std::to_string(chunk.length()) + " bytes at offset " +
                                                   std::to_string(chunk.offset()) + " reach past its size in the manifest (" +
                                                   std::to_string(nbytes) + ")");
  if (index != tensor_ || chunk.offset() != offset_) {
    const std::string expected = tensor_ < manifest_->size() ? "'" + (*manifest_)[tensor_].name + "' at offset " + std::to_string(offset_) : "checkpoint end";
    throw ProtocolError(v1::OUT_OF_ORDER, where + ": chunk at offset " + std::to_string(chunk.offset()) +
                                              " out of order (expected " + expected + ")");
  }
  if (chunk.length() == 0) throw ProtocolError(v1::MALFORMED, where + ": empty chunk");
  // Verified on the frame itself: no copy is made before (or, for large frames, after) the check.
  if (wire::checksum(payload) != chunk.checksum())
    throw ProtocolError(v1::CHECKSUM_MISMATCH, where + ": chunk checksum mismatch at offset " + std::to_string(chunk.offset()));
  if (payload.size() >= kKeepFrameBytes) {
    auto owner = std::make_shared<const zmq::message_t>(std::move(frame));
    c_->data[index].append({static_cast<const std::byte*>(owner->data()), owner->size()}, owner);
  } else {
    c_->data[index].append_copy(payload);
  }
  whole_.add(chunk.checksum());
  offset_ += chunk.length();
  received_ += chunk.length();
  skip_complete_tensors();
}

std::shared_ptr<StoredCheckpoint> CheckpointAssembler::finish(const v1::CheckpointEnd& end) {
  const auto where = "step " + std::to_string(c_->step);
  if (tensor_ < manifest_->size())
    throw ProtocolError(v1::OUT_OF_ORDER, where + ": end before all bytes arrived (tensor '" +
                                              (*manifest_)[tensor_].name + "' has " + std::to_string(offset_) + " of " +
                                              std::to_string((*manifest_)[tensor_].nbytes()) + ")");
  if (end.total_bytes() != received_)
    throw ProtocolError(v1::MANIFEST_MISMATCH, where + ": end says " + std::to_string(end.total_bytes()) +
                                                   " bytes, received " + std::to_string(received_));
  if (end.checksum() != whole_.digest())
    throw ProtocolError(v1::CHECKSUM_MISMATCH, where + ": checkpoint checksum mismatch");
  return c_;
}

}  // namespace wsm::merger
