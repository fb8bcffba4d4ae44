// RequestQueue (on-demand merges queued per peer and in all): the per-peer and total limits of
// docs/protocol.md ("Limits") refuse with BAD_REQUEST naming the limit; answered requests free room.
#include <gtest/gtest.h>

#include "merger/daemon/request_queue.h"
#include "wsm/wire/wire.h"

namespace wsm::merger {
namespace {

v1::ErrorCode refusal(const RequestQueue& q, const std::string& peer, std::string* message = nullptr) {
  try {
    q.check_room(peer);
  } catch (const wire::ProtocolError& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return v1::ERROR_UNSPECIFIED;
}

TEST(RequestQueue, PerPeerLimit) {
  RequestQueue q;
  for (int i = 0; i < kMaxQueuedRequestsPerPeer; ++i) {
    EXPECT_EQ(refusal(q, "a"), v1::ERROR_UNSPECIFIED) << i;
    q.add("a");
  }
  std::string message;
  EXPECT_EQ(refusal(q, "a", &message), v1::BAD_REQUEST);
  EXPECT_NE(message.find(std::to_string(kMaxQueuedRequestsPerPeer) + " requests of this peer"), std::string::npos);
  EXPECT_EQ(refusal(q, "b"), v1::ERROR_UNSPECIFIED);  // another peer is not limited by a's
  q.done("a");
  EXPECT_EQ(q.queued("a"), kMaxQueuedRequestsPerPeer - 1);
  EXPECT_EQ(refusal(q, "a"), v1::ERROR_UNSPECIFIED);
}

TEST(RequestQueue, TotalLimitAndRelease) {
  RequestQueue q;
  int added = 0;
  for (int p = 0; added < kMaxQueuedRequests; ++p)
    for (int i = 0; i < kMaxQueuedRequestsPerPeer && added < kMaxQueuedRequests; ++i, ++added)
      q.add("p" + std::to_string(p));
  EXPECT_EQ(q.total(), kMaxQueuedRequests);
  std::string message;
  EXPECT_EQ(refusal(q, "new", &message), v1::BAD_REQUEST);
  EXPECT_NE(message.find(std::to_string(kMaxQueuedRequests) + " requests are queued already"), std::string::npos);
  q.done("p0");
  EXPECT_EQ(refusal(q, "new"), v1::ERROR_UNSPECIFIED);
  // Every answer releases its peer's count; a peer with none left is forgotten.
  for (int p = 0; p * kMaxQueuedRequestsPerPeer < kMaxQueuedRequests; ++p)
    while (q.queued("p" + std::to_string(p)) > 0) q.done("p" + std::to_string(p));
  EXPECT_EQ(q.total(), 0);
  EXPECT_EQ(q.peers(), 0u);
  q.done("never-asked");  // an answer for a peer with nothing queued changes nothing
  EXPECT_EQ(q.total(), 0);
}

}  // namespace
}  // namespace wsm::merger
