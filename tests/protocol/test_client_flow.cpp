// The C++ client against a scripted fake merger (a raw ROUTER): it never has more chunks in flight
// than the credit granted, sends zero-copy frames that keep the snapshot alive, and send_checkpoint
// waits (with a warning) when the bounded queue is full under OutagePolicy::wait. Against a real daemon: snapshots large
// enough for the sender thread to share the copy arrive intact.
#include <gtest/gtest.h>

#include "tests/merger/serve_test_util.h"

namespace wsm {
namespace {

struct FakeMerger {
  zmq::context_t ctx{1};
  zmq::socket_t router{ctx, zmq::socket_type::router};
  std::string endpoint;
  FakeMerger() {
    router.set(zmq::sockopt::linger, 0);
    router.bind("tcp://127.0.0.1:*");
    endpoint = router.get(zmq::sockopt::last_endpoint);
  }
  std::optional<wire::Message> next(int timeout_ms) {
    auto r = wire::receive(router, wire::SocketRole::router, timeout_ms);
    if (!r || !r->message) return std::nullopt;
    return std::move(*r->message);
  }
  void reply(const std::string& peer, const v1::Envelope& env) { wire::send(router, peer, env); }
};

TEST(ClientFlow, NeverExceedsTheGrantedCredit) {
  FakeMerger fake;
  ClientOptions co;
  co.endpoint = fake.endpoint;
  co.chunk_bytes = 64;
  co.stall_timeout_ms = 5000;
  MergerClient client(co);
  auto model = test::make_model(1, {{256}});  // 1024 bytes = 16 chunks
  client.send_checkpoint(1, 1, 1e-3, test::views(model));

  auto hello = fake.next(3000);
  ASSERT_TRUE(hello && hello->envelope.has_hello());
  EXPECT_EQ(hello->envelope.hello().manifest(0).shape(0), 256);
  auto welcome = wire::envelope();
  welcome.mutable_welcome()->set_credit(3);
  welcome.mutable_welcome()->set_protocol_version(1);
  fake.reply(hello->peer, welcome);

  // Receives until `want` chunks arrived (bounded), then checks that nothing more comes for a while.
  auto count_chunks = [&](int want) {
    int chunks = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (chunks < want && std::chrono::steady_clock::now() < until)
      if (auto m = fake.next(100); m && m->envelope.has_chunk()) ++chunks;
    while (auto m = fake.next(300))
      if (m->envelope.has_chunk()) ++chunks;
    return chunks;
  };
  EXPECT_EQ(count_chunks(3), 3);  // begin + 3 chunks, then it waits
  auto credit = wire::envelope();
  credit.mutable_credit()->set_grant(5);
  fake.reply(hello->peer, credit);
  EXPECT_EQ(count_chunks(5), 5);
  credit.mutable_credit()->set_grant(100);
  fake.reply(hello->peer, credit);
  int chunks = 0;
  bool ended = false;
  while (auto m = fake.next(5000)) {
    chunks += m->envelope.has_chunk();
    if (m->envelope.has_end()) {
      ended = true;
      EXPECT_EQ(m->envelope.end().total_bytes(), 1024u);
      auto ack = wire::envelope();
      ack.mutable_ack()->set_step(1);
      fake.reply(hello->peer, ack);
      break;
    }
  }
  EXPECT_EQ(chunks, 8);
  EXPECT_TRUE(ended);
  client.flush();
  EXPECT_EQ(client.stats().checkpoints_acked, 1u);
}

TEST(ClientFlow, FullQueueMakesSendWait) {
  FakeMerger fake;
  ClientOptions co;
  co.endpoint = fake.endpoint;
  co.queue_bytes = 2048;  // two snapshots of 1024 bytes
  co.policy = OutagePolicy::wait;
  MergerClient client(co);
  auto model = test::make_model(1, {{256}});
  std::atomic<int> sent{0};
  std::thread trainer([&] {
    for (int step = 1; step <= 3; ++step) {
      client.send_checkpoint(step, step, 1e-3, test::views(model));
      ++sent;
    }
  });
  ASSERT_TRUE(test::wait_for([&] { return sent.load() == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(sent.load(), 2);  // the third waits: the merger has not acked anything

  // Now play the merger: welcome, then ack each checkpoint when it ends.
  int acked = 0;
  std::string peer;
  while (acked < 3) {
    auto m = fake.next(3000);
    ASSERT_TRUE(m.has_value()) << "client went silent after " << acked << " acks";
    peer = m->peer;
    if (m->envelope.has_hello()) {
      auto w = wire::envelope();
      w.mutable_welcome()->set_credit(1000);
      fake.reply(peer, w);
    } else if (m->envelope.has_end()) {
      auto ack = wire::envelope();
      ack.mutable_ack()->set_step(m->envelope.end().step());
      fake.reply(peer, ack);
      ++acked;
    }
  }
  trainer.join();
  client.flush();
  EXPECT_EQ(sent.load(), 3);
  EXPECT_EQ(client.stats().queue_waits, 1u);
  EXPECT_EQ(client.stats().checkpoints_acked, 3u);
}

TEST(ClientFlow, SnapshotIsIndependentOfTheCallersBuffer) {
  FakeMerger fake;
  ClientOptions co;
  co.endpoint = fake.endpoint;
  MergerClient client(co);
  auto model = test::make_model(7, {{16}});
  const auto expected = model[0].values;
  client.send_checkpoint(7, 7, 1e-3, test::views(model));
  std::fill(model[0].values.begin(), model[0].values.end(), -1.0f);  // training moves on
  std::vector<float> got(16);
  std::string peer;
  for (;;) {
    auto m = fake.next(3000);
    ASSERT_TRUE(m.has_value());
    peer = m->peer;
    if (m->envelope.has_hello()) {
      auto w = wire::envelope();
      w.mutable_welcome()->set_credit(10);
      fake.reply(peer, w);
    } else if (m->envelope.has_chunk()) {
      const auto& c = m->envelope.chunk();
      EXPECT_EQ(c.checksum(), wire::checksum(m->payload_bytes()));
      std::memcpy(reinterpret_cast<std::byte*>(got.data()) + c.offset(), m->payload_bytes().data(), c.length());
    } else if (m->envelope.has_end()) {
      auto ack = wire::envelope();
      ack.mutable_ack()->set_step(7);
      fake.reply(peer, ack);
      break;
    }
  }
  client.flush();
  EXPECT_EQ(got, expected);
}

TEST(ClientFlow, SharedSnapshotCopiesArriveIntact) {
  // 3 MiB and 5 MiB + 12 bytes: several of SnapshotCopy's 2 MiB blocks, the last one partial.
  const std::vector<std::vector<std::int64_t>> shapes{{786432}, {1310723}};
  const auto out = test::temp_dir("shared-copy");
  test::ServerThread server(test::server_options(out, "linear:100", 1000000));  // keeps every step below
  ClientOptions co;
  co.endpoint = server.endpoint();
  MergerClient client(co);
  auto model = test::make_model(0, shapes);
  // Back to back, so the sender thread is idle for the first copy and busy streaming for the next.
  for (std::int64_t step = 1; step <= 4; ++step) {
    model = test::make_model(step, shapes);
    client.send_checkpoint(step, step, 1e-3, test::views(model));
    for (auto& t : model) std::fill(t.values.begin(), t.values.end(), -1.0f);  // training moves on
  }
  client.flush();
  server.stop();
  const auto& entries = server.server().window().entries("run");
  ASSERT_EQ(entries.size(), 4u);
  for (const auto& e : entries) {
    const auto expected = test::make_model(e->step, shapes);
    for (std::size_t t = 0; t < shapes.size(); ++t) {
      std::vector<float> got(expected[t].values.size());
      e->data[t].read(0, std::as_writable_bytes(std::span(got)));
      EXPECT_TRUE(got == expected[t].values) << "step " << e->step << ", tensor " << t;
    }
  }
}

}  // namespace
}  // namespace wsm
