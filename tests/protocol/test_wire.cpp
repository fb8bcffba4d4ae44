// Framing and checksums of wsm/wire/wire.h.
#include <gtest/gtest.h>

#include <xxhash.h>

#include "wsm/wire/wire.h"

namespace wsm::wire {
namespace {

std::vector<std::byte> bytes(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(i * 7 + 3);
  return v;
}

TEST(ProtocolWire, StreamChecksumEqualsOneShotOverTheConcatenation) {
  const auto data = bytes(100000);
  StreamChecksum s;
  for (std::size_t off = 0; off < data.size(); off += 333)
    s.update(std::span<const std::byte>(data).subspan(off, std::min<std::size_t>(333, data.size() - off)));
  EXPECT_EQ(s.digest(), checksum(data));
  EXPECT_EQ(checksum(data), XXH3_64bits(data.data(), data.size()));
  auto changed = data;
  changed[500] ^= std::byte{1};
  EXPECT_NE(checksum(changed), checksum(data));
}

// checksum() may use the library's run-time dispatching entry point (AVX2/AVX-512); the library's
// plain XXH3_64bits (baseline SSE2 on Debian) is an independent code path for the same function.
// Sizes cover XXH3's short-input branches, the stripe loop and a tail.
TEST(ProtocolWire, ChecksumIsXxh3OfEverySize) {
  for (const std::size_t n : {0u, 1u, 3u, 16u, 17u, 128u, 129u, 240u, 241u, 1024u, 65'536u, (1u << 20) + 3u}) {
    const auto data = bytes(n);
    EXPECT_EQ(checksum(data), XXH3_64bits(data.data(), data.size())) << n << " bytes";
    StreamChecksum s;
    s.update(data);
    EXPECT_EQ(s.digest(), XXH3_64bits(data.data(), data.size())) << n << " bytes, streamed";
  }
}

TEST(ProtocolWire, ParseRejectsMalformedVersionAndEmptyBody) {
  const std::string junk = "\xff\xff\xff\xff";
  try {
    parse_envelope(std::as_bytes(std::span(junk)), false);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_EQ(e.code(), v1::MALFORMED);
  }
  auto env = envelope();
  env.set_version(9);
  env.mutable_status_request();
  const auto s = env.SerializeAsString();
  try {
    parse_envelope(std::as_bytes(std::span(s)), false);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_EQ(e.code(), v1::VERSION_MISMATCH);
  }
  const auto empty = envelope().SerializeAsString();
  try {
    parse_envelope(std::as_bytes(std::span(empty)), false);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_EQ(e.code(), v1::UNKNOWN_MESSAGE);
  }
  auto chunk = envelope();
  chunk.mutable_chunk()->set_name("x");
  const auto c = chunk.SerializeAsString();
  EXPECT_THROW(parse_envelope(std::as_bytes(std::span(c)), false), ProtocolError);  // chunk without payload
}

TEST(ProtocolWire, RoundTripOverRouterDealerWithBorrowedPayload) {
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router), dealer(ctx, zmq::socket_type::dealer);
  router.bind("inproc://wire-test");
  dealer.set(zmq::sockopt::routing_id, "peer-1");
  dealer.connect("inproc://wire-test");

  auto owner = std::make_shared<std::vector<std::byte>>(bytes(4096));
  auto env = envelope();
  auto* c = env.mutable_chunk();
  c->set_name("w");
  c->set_length(owner->size());
  c->set_checksum(checksum(*owner));
  {
    std::weak_ptr<std::vector<std::byte>> weak = owner;
    send(dealer, "", env, borrowed_frame(owner, owner->data(), owner->size()));
    auto r = receive(router, SocketRole::router, 2000);
    ASSERT_TRUE(r && r->message);
    EXPECT_EQ(r->peer, "peer-1");
    EXPECT_TRUE(r->message->envelope.has_chunk());
    EXPECT_EQ(checksum(r->message->payload_bytes()), c->checksum());
    owner.reset();
    // The frame's reference is dropped once ZeroMQ is done with it (inproc passes it through).
    r.reset();
    EXPECT_TRUE(weak.expired());
  }
  auto reply = envelope();
  reply.mutable_ack()->set_step(5);
  send(router, "peer-1", reply);
  auto back = receive(dealer, SocketRole::dealer, 2000);
  ASSERT_TRUE(back && back->message);
  EXPECT_EQ(back->message->envelope.ack().step(), 5);
}

TEST(ProtocolWire, LoopbackEndpoints) {
  EXPECT_TRUE(is_loopback_endpoint("tcp://127.0.0.1:5555"));
  EXPECT_TRUE(is_loopback_endpoint("tcp://localhost:*"));
  EXPECT_TRUE(is_loopback_endpoint("ipc:///tmp/wsm"));
  EXPECT_FALSE(is_loopback_endpoint("tcp://0.0.0.0:5555"));
  EXPECT_FALSE(is_loopback_endpoint("tcp://10.0.0.1:5555"));
  EXPECT_FALSE(is_loopback_endpoint("tcp://127.0.0.1.evil.com:5555"));
}

}  // namespace
}  // namespace wsm::wire
