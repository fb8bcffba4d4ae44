#pragma once
// Framing of wsm.v1 messages over ZeroMQ multipart (docs/protocol.md): one protobuf Envelope
// frame, then one raw-bytes frame for a TensorChunk. On a ROUTER socket the peer's routing id
// comes first. Tensor bytes never pass through protobuf and are sent without copies.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include <zmq.hpp>

#include "wsm/core/error.h"
#include "wsm/wire/wsm.pb.h"

namespace wsm::wire {

inline constexpr std::uint32_t kProtocolVersion = 1;  // Envelope.version (framing) and a plain Hello
// Hello.protocol_version of a sender that is one rank of a sharded job (Hello.group, slices in the
// manifest). A daemon speaks both; a version-1 Hello is the world-size-1 case.
inline constexpr std::uint32_t kShardedProtocolVersion = 2;

// XXH3-64, seed 0, of a byte range: the per-chunk checksum.
std::uint64_t checksum(std::span<const std::byte> bytes);

// Streaming XXH3-64 of a sequence of ranges: the per-checkpoint checksum.
class StreamChecksum {
 public:
  StreamChecksum();
  ~StreamChecksum();
  StreamChecksum(const StreamChecksum&) = delete;
  StreamChecksum& operator=(const StreamChecksum&) = delete;
  void reset();
  void update(std::span<const std::byte> bytes);
  std::uint64_t digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The per-checkpoint checksum: XXH3-64 over the chunk checksums in the order sent, each as 8
// little-endian bytes. It covers every byte (through the chunk checksums) plus the chunk order,
// without hashing the data a second time.
class ChecksumChain {
 public:
  void add(std::uint64_t chunk_checksum);
  std::uint64_t digest() const { return stream_.digest(); }

 private:
  StreamChecksum stream_;
};

// A protocol fault detected on receipt; code goes back to the sender in an ErrorReply.
class ProtocolError : public Error {
 public:
  ProtocolError(v1::ErrorCode code, const std::string& message) : Error(message), code_(code) {}
  v1::ErrorCode code() const { return code_; }

 private:
  v1::ErrorCode code_;
};

struct Message {
  std::string peer;                       // ROUTER side only: the sender's routing id
  std::string user_id;                    // the sender's CURVE public key (Z85) when CURVE is on, else empty
  v1::Envelope envelope;
  std::optional<zmq::message_t> payload;  // TensorChunk bytes

  std::span<const std::byte> payload_bytes() const {
    if (!payload) return {};
    return {static_cast<const std::byte*>(payload->data()), payload->size()};
  }
};

// An Envelope with version set and an empty body, ready to fill.
v1::Envelope envelope();
v1::Envelope error_envelope(v1::ErrorCode code, const std::string& message, std::int64_t step = 0,
                            std::uint64_t request_id = 0);

// Checks an envelope frame and its payload frame count; throws ProtocolError (MALFORMED,
// UNKNOWN_MESSAGE, VERSION_MISMATCH). Body-specific checks belong to the handlers.
v1::Envelope parse_envelope(std::span<const std::byte> frame, bool has_payload);

// Receives one message, waiting at most timeout_ms (-1: forever). nullopt on timeout. On a
// malformed message it still returns the peer, via ProtocolError's companion below.
struct Received {
  std::string peer;
  std::optional<Message> message;       // set when the message is well-formed
  std::optional<ProtocolError> fault;   // set when it is not (peer still known on a ROUTER)
};
// A ROUTER's messages start with the peer's routing id; a DEALER's do not.
enum class SocketRole { router, dealer };
std::optional<Received> receive(zmq::socket_t& socket, SocketRole role, int timeout_ms);

// Sends envelope (+ payload). peer is the routing id for a ROUTER socket, empty for a DEALER.
void send(zmq::socket_t& socket, const std::string& peer, const v1::Envelope& env);
void send(zmq::socket_t& socket, const std::string& peer, const v1::Envelope& env, zmq::message_t&& payload);

// A frame pointing at `data` with no copy: `owner` keeps the bytes alive until ZeroMQ's I/O
// thread has written them, however long after the call that is.
zmq::message_t borrowed_frame(std::shared_ptr<const void> owner, const void* data, std::size_t size);

// Loopback or in-process endpoints: tcp://127.0.0.1, tcp://localhost, tcp://[::1], ipc://, inproc://.
bool is_loopback_endpoint(const std::string& endpoint);

}  // namespace wsm::wire
