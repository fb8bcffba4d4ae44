#include "wsm/wire/wire.h"
#include "wsm/wire/bounded_receive.h"

#include <cstdint>
#include <iterator>
#include <vector>

#include <zmq_addon.hpp>

#include <xxhash.h>
#ifdef WSM_HAVE_XXH_DISPATCH
// Renames the XXH3 calls below to the entry points that pick the widest vector unit at run time:
// the library's default ones are SSE2, and checksums were a quarter of ingest's CPU time with them.
// The hash values are the same.
#include <xxh_x86dispatch.h>
#endif

namespace wsm::wire {

std::uint64_t checksum(std::span<const std::byte> bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

struct StreamChecksum::State {
  XXH3_state_t* s = XXH3_createState();
  ~State() { XXH3_freeState(s); }
};

StreamChecksum::StreamChecksum() : state_(std::make_unique<State>()) {
  if (!state_->s) throw Error("xxhash: cannot allocate a checksum state");
  reset();
}
StreamChecksum::~StreamChecksum() = default;
void StreamChecksum::reset() { XXH3_64bits_reset(state_->s); }
void StreamChecksum::update(std::span<const std::byte> bytes) { XXH3_64bits_update(state_->s, bytes.data(), bytes.size()); }
std::uint64_t StreamChecksum::digest() const { return XXH3_64bits_digest(state_->s); }

void ChecksumChain::add(std::uint64_t chunk_checksum) {
  std::byte le[8];
  for (int i = 0; i < 8; ++i) le[i] = std::byte((chunk_checksum >> (8 * i)) & 0xff);
  stream_.update(le);
}

v1::Envelope envelope() {
  v1::Envelope env;
  env.set_version(kProtocolVersion);
  return env;
}

v1::Envelope error_envelope(v1::ErrorCode code, const std::string& message, std::int64_t step,
                            std::uint64_t request_id) {
  auto env = envelope();
  auto* e = env.mutable_error();
  e->set_code(code);
  e->set_message(message);
  e->set_step(step);
  e->set_request_id(request_id);
  return env;
}

v1::Envelope parse_envelope(std::span<const std::byte> frame, bool has_payload) {
  v1::Envelope env;
  if (!env.ParseFromArray(frame.data(), static_cast<int>(frame.size())))
    throw ProtocolError(v1::MALFORMED, "malformed envelope (" + std::to_string(frame.size()) + " bytes)");
  if (env.version() != kProtocolVersion)
    throw ProtocolError(v1::VERSION_MISMATCH, "protocol version " + std::to_string(env.version()) +
                                                  " not supported (this side speaks " +
                                                  std::to_string(kProtocolVersion) + ")");
  if (env.body_case() == v1::Envelope::BODY_NOT_SET)
    throw ProtocolError(v1::UNKNOWN_MESSAGE, "envelope with no known message body");
  const bool wants_payload = env.body_case() == v1::Envelope::kChunk;
  if (wants_payload != has_payload)
    throw ProtocolError(v1::MALFORMED, wants_payload ? "tensor chunk without its payload frame"
                                                     : "unexpected payload frame after a non-chunk message");
  return env;
}

std::optional<Received> receive(zmq::socket_t& socket, SocketRole role, int timeout_ms) {
  return receive(socket, role, timeout_ms, SIZE_MAX);
}

std::optional<Received> receive(zmq::socket_t& socket, SocketRole role, int timeout_ms, std::size_t max_envelope_bytes) {
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::milliseconds(timeout_ms)) == 0) return std::nullopt;
  std::vector<zmq::message_t> frames;
  if (!zmq::recv_multipart(socket, std::back_inserter(frames), zmq::recv_flags::dontwait)) return std::nullopt;

  Received r;
  std::size_t first = 0;
  if (role == SocketRole::router) {
    r.peer = frames[0].to_string();
    first = 1;
  }
  const std::size_t n = frames.size() - first;
  try {
    if (n < 1 || n > 2)
      throw ProtocolError(v1::MALFORMED, "message with " + std::to_string(n) + " frames (want 1 or 2)");
    Message msg;
    msg.peer = r.peer;
    // Set by the ZAP handler (merger/daemon/curve_auth.h) to the client's public key; absent without CURVE.
    if (const char* user = zmq_msg_gets(frames[first].handle(), "User-Id")) msg.user_id = user;
    const auto& env_frame = frames[first];
    if (env_frame.size() > max_envelope_bytes)
      throw ProtocolError(v1::MALFORMED, "envelope of " + std::to_string(env_frame.size()) + " bytes exceeds the limit of " +
                                             std::to_string(max_envelope_bytes) +
                                             " (a hello's manifest: fewer or shorter entries, or a larger --memory-budget)");
    msg.envelope = parse_envelope({static_cast<const std::byte*>(env_frame.data()), env_frame.size()}, n == 2);
    if (n == 2) msg.payload = std::move(frames[first + 1]);
    r.message = std::move(msg);
  } catch (const ProtocolError& e) {
    r.fault = e;
  }
  return r;
}

namespace {
zmq::message_t serialize(const v1::Envelope& env) {
  zmq::message_t m(env.ByteSizeLong());
  env.SerializeToArray(m.data(), static_cast<int>(m.size()));
  return m;
}
}  // namespace

void send(zmq::socket_t& socket, const std::string& peer, const v1::Envelope& env) {
  if (!peer.empty()) socket.send(zmq::buffer(peer), zmq::send_flags::sndmore);
  socket.send(serialize(env), zmq::send_flags::none);
}

void send(zmq::socket_t& socket, const std::string& peer, const v1::Envelope& env, zmq::message_t&& payload) {
  if (!peer.empty()) socket.send(zmq::buffer(peer), zmq::send_flags::sndmore);
  // A socket with a send timeout (the client's) may give up on the first frame: then the payload
  // must not go out alone as a message of its own.
  if (!socket.send(serialize(env), zmq::send_flags::sndmore)) return;
  socket.send(std::move(payload), zmq::send_flags::none);
}

namespace {
// ZeroMQ calls this from its I/O thread when it is done with a frame: drop our reference.
void release_owner(void* /*data*/, void* hint) {
  std::unique_ptr<std::shared_ptr<const void>> owner(static_cast<std::shared_ptr<const void>*>(hint));
}
}  // namespace

zmq::message_t borrowed_frame(std::shared_ptr<const void> owner, const void* data, std::size_t size) {
  // ZeroMQ's C API takes ownership through a void* hint; the heap-held shared_ptr is handed over
  // here and reclaimed by release_owner.
  auto holder = std::make_unique<std::shared_ptr<const void>>(std::move(owner));
  zmq::message_t m(const_cast<void*>(data), size, &release_owner, holder.get());
  holder.release();
  return m;
}

bool is_loopback_endpoint(const std::string& endpoint) {
  for (const char* prefix : {"ipc://", "inproc://"})
    if (endpoint.rfind(prefix, 0) == 0) return true;
  for (const char* host : {"tcp://127.0.0.1:", "tcp://localhost:", "tcp://[::1]:"})
    if (endpoint.rfind(host, 0) == 0) return true;
  return false;
}

}  // namespace wsm::wire
