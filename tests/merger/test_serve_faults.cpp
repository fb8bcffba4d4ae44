// Faults over 127.0.0.1, each answered with an error to its sender while a well-behaved C++ client
// keeps streaming to the same daemon: malformed frames, unknown messages, wrong protocol version,
// a sender that dies mid-checkpoint (discarded after the timeout), and a merger restart while a
// client is sending (the client reconnects and resends; the window is rebuilt from --store).
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <fstream>
#include <iostream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "merger/daemon/output_index.h"
#include "serve_test_util.h"

namespace wsm {
namespace {

const std::vector<std::vector<std::int64_t>> kShapes{{32, 8}, {16}};

using test::status_of;

TEST(ServeFaults, BadMessagesGetErrorsWhileAClientKeepsSending) {
  const auto out = test::temp_dir("faults");
  test::ServerThread server(test::server_options(out, "linear:300", 100));
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "good";
  MergerClient client(co);
  std::atomic<bool> done{false};
  std::thread good([&] {
    for (std::int64_t step = 100; step <= 1000; step += 100) {
      auto model = test::make_model(step, kShapes);
      client.send_checkpoint(step, step, 1e-3, test::views(model));
    }
    client.flush();
    done = true;
  });

  test::RawPeer bad(server.endpoint());
  bad.send_frames({"\xff\xfe not a protobuf"});
  auto r = bad.next();
  ASSERT_TRUE(r && r->has_error());
  EXPECT_EQ(r->error().code(), v1::MALFORMED);

  bad.send_frames({"a", "b", "c"});
  r = bad.next();
  ASSERT_TRUE(r && r->has_error());
  EXPECT_EQ(r->error().code(), v1::MALFORMED);

  auto v2 = wire::envelope();
  v2.set_version(2);
  v2.mutable_status_request();
  bad.send(v2);
  r = bad.next();
  ASSERT_TRUE(r && r->has_error());
  EXPECT_EQ(r->error().code(), v1::VERSION_MISMATCH);

  auto empty = wire::envelope();  // no body: an unknown message type
  bad.send(empty);
  r = bad.next();
  ASSERT_TRUE(r && r->has_error());
  EXPECT_EQ(r->error().code(), v1::UNKNOWN_MESSAGE);

  // A chunk for a tensor not in the manifest, and a duplicate step, each reach the sender.
  auto model = test::make_model(5000, kShapes);
  bad.send(test::hello("other", model));
  r = bad.next();
  ASSERT_TRUE(r && r->has_welcome());
  bad.send(test::begin(5000));
  bad.send(test::chunk(5000, "ghost.weight", 0, test::bytes_of(model[0])), test::bytes_of(model[0]));
  r = bad.next();
  ASSERT_TRUE(r && r->has_error());
  EXPECT_EQ(r->error().code(), v1::UNKNOWN_TENSOR);

  good.join();
  EXPECT_TRUE(done);
  EXPECT_EQ(client.stats().checkpoints_acked, 10u);
  EXPECT_EQ(client.stats().checkpoints_failed, 0u);
}

TEST(ServeFaults, SenderDyingMidCheckpointIsDiscardedOthersUnaffected) {
  const auto out = test::temp_dir("dies");
  auto opts = test::server_options(out, "linear:300", 100);
  opts.core.partial_timeout = std::chrono::milliseconds(300);
  test::ServerThread server(opts);
  auto model = test::make_model(100, kShapes);
  {
    test::RawPeer dying(server.endpoint());
    dying.send(test::hello("run", model));
    ASSERT_TRUE(dying.next()->has_welcome());
    dying.send(test::begin(100));
    dying.send(test::chunk(100, model[0].name, 0, test::bytes_of(model[0]).first(64)), test::bytes_of(model[0]).first(64));
    // ...and the process "dies": the socket goes away mid-checkpoint.
  }
  // Another run is served meanwhile.
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "other";
  MergerClient other(co);
  other.send_checkpoint(100, 100, 1e-3, test::views(model));
  other.flush();

  ASSERT_TRUE(test::wait_for([&] { return status_of(server.endpoint()).checkpoints_rejected() >= 1; }, 5000));
  const auto st = status_of(server.endpoint());
  for (const auto& w : st.window()) EXPECT_NE(w.run_id(), "run");
  // The same step of the same run now arrives whole from a new sender.
  co.run_id = "run";
  MergerClient again(co);
  again.send_checkpoint(100, 100, 1e-3, test::views(model));
  EXPECT_NO_THROW(again.flush());
}

TEST(ServeFaults, ClientErrorsSurfaceAtFlush) {
  const auto out = test::temp_dir("flush-err");
  test::ServerThread server(test::server_options(out, "linear:300", 100));
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "run";
  MergerClient client(co);
  auto model = test::make_model(100, kShapes);
  client.send_checkpoint(100, 100, 1e-3, test::views(model));
  auto other = test::make_model(300, kShapes);
  client.send_checkpoint(100, 100, 1e-3, test::views(other));  // the same step with other contents
  try {
    client.flush();
    FAIL() << "flush did not report the duplicate step";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already received"), std::string::npos) << e.what();
  }
  EXPECT_EQ(client.stats().checkpoints_acked, 1u);
  EXPECT_EQ(client.stats().checkpoints_failed, 1u);
  client.send_checkpoint(200, 200, 1e-3, test::views(model));
  EXPECT_NO_THROW(client.flush());  // errors are reported once
}

TEST(ServeFaults, MergerRestartWhileSendingClientResendsAndWindowIsRebuilt) {
  const auto out = test::temp_dir("restart-out");
  const auto store = test::temp_dir("restart-store");
  auto opts = test::server_options(out, "linear:300", 100);
  opts.core.store.store_dir = store;
  auto first = std::make_unique<test::ServerThread>(opts);
  const std::string endpoint = first->endpoint();

  ClientOptions co;
  co.endpoint = endpoint;
  co.run_id = "run";
  co.chunk_bytes = 256;          // many chunks per checkpoint
  co.stall_timeout_ms = 300;     // notice the dead merger quickly
  co.reconnect_timeout_ms = 20000;
  MergerClient client(co);
  auto m100 = test::make_model(100, kShapes);
  client.send_checkpoint(100, 100, 1e-3, test::views(m100));
  client.flush();

  first.reset();  // the merger goes away (as after kill); step 200 is sent into the void
  auto m200 = test::make_model(200, kShapes);
  client.send_checkpoint(200, 200, 1e-3, test::views(m200));
  std::this_thread::sleep_for(std::chrono::milliseconds(700));

  opts.listen = endpoint;  // same port, same store
  test::ServerThread second(opts);
  client.flush();
  EXPECT_GE(client.stats().resends, 1u);
  EXPECT_EQ(client.stats().checkpoints_acked, 2u);
  second.server().wait_store_idle();  // acknowledged, then written in the background

  const auto st = status_of(endpoint);
  ASSERT_EQ(st.window_size(), 2);
  EXPECT_EQ(st.window(0).step(), 100);  // rebuilt from the store
  EXPECT_TRUE(st.window(0).on_disk());
  EXPECT_EQ(st.window(1).step(), 200);
  // Nothing half-written is left in the store.
  for (const auto& f : std::filesystem::recursive_directory_iterator(store))
    EXPECT_EQ(f.path().string().find(".tmp-"), std::string::npos) << f.path();
}

TEST(ServeFaults, RestartRecoversTheWindowAndEmitsFromIt) {
  const auto out = test::temp_dir("rebuild-out");
  const auto store = test::temp_dir("rebuild-store");
  auto opts = test::server_options(out, "linear:200", 100);
  opts.core.store.store_dir = store;
  opts.core.store.memory_budget = 1500;  // one checkpoint (1088 bytes): the rest spills
  std::vector<std::vector<float>> sent;
  {
    test::ServerThread server(opts);
    ClientOptions co;
    co.endpoint = server.endpoint();
    co.run_id = "run";
    MergerClient client(co);
    for (std::int64_t step = 100; step <= 200; step += 100) {
      auto model = test::make_model(step, kShapes);
      client.send_checkpoint(step, step, 1e-3, test::views(model));
    }
    client.flush();
    server.server().wait_outputs_idle();
    server.server().wait_store_idle();  // files are written in the background; spilled once written
    const auto st = status_of(server.endpoint());
    ASSERT_EQ(st.window_size(), 2);
    EXPECT_FALSE(st.window(0).in_memory());  // spilled: over budget
    // Both stored (whether step 200 stays in memory too depends on when its output's running sum
    // let go of its bytes, so that is not asserted).
    EXPECT_TRUE(st.window(0).on_disk());
    EXPECT_TRUE(st.window(1).on_disk());
    opts.listen = server.endpoint();
  }
  test::ServerThread server(opts);
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "run";
  MergerClient client(co);
  auto model = test::make_model(300, kShapes);
  client.send_checkpoint(300, 300, 1e-3, test::views(model));
  client.flush();
  server.server().wait_outputs_idle();
  // linear:200 at 300 = mean of 200 (from disk) and 300.
  const auto merged = load_checkpoint(out / "run" / "linear_w200" / "step_000000000300.h5");
  const auto& t = merged.tensors[1];
  for (std::size_t i = 0; i < 16; ++i) {
    float got;
    std::memcpy(&got, t.data.data() + i * 4, 4);
    const double ref = 0.5 * test::tensor_value(1, 200, i) + 0.5 * test::tensor_value(1, 300, i);
    EXPECT_NEAR(got, ref, 1e-6);
  }
}

pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

void write_bytes(const std::filesystem::path& p, std::size_t n) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << std::string(n, 'x');
}

TEST(ServeFaults, KilledWritersTemporariesAreSweptAndTheIndexIsReconciledOnStart) {
  const auto out = test::temp_dir("sweep-out");
  const auto store = test::temp_dir("sweep-store");
  auto opts = test::server_options(out, "linear:200", 100);
  opts.core.store.store_dir = store;
  {
    test::ServerThread server(opts);
    ClientOptions co;
    co.endpoint = server.endpoint();
    co.run_id = "run";
    MergerClient client(co);
    for (std::int64_t step = 100; step <= 400; step += 100) {
      auto model = test::make_model(step, kShapes);
      client.send_checkpoint(step, step, 1e-3, test::views(model));
      client.flush();
      server.server().wait_outputs_idle();  // each output written (a queued one may be replaced by a newer)
    }
    server.server().wait_store_idle();
  }
  // What kill -9 leaves: temporaries of a dead writer (a file in the store, a sharded set's
  // directory in out), an output renamed into place whose index record was never written, and a
  // record of an output that is gone. A live writer's temporary (this process's) stays.
  const auto dead = std::to_string(dead_pid()), live = std::to_string(::getpid());
  const auto label_dir = out / "run" / "linear_w200";
  const auto stale_file = store / "run" / ("step_000000000500.h5.tmp-" + dead + "-0");
  const auto stale_dir = label_dir / ("step_000000000500.h5.tmp-" + dead + "-1");
  const auto live_file = label_dir / ("step_000000000600.h5.tmp-" + live + "-2");
  write_bytes(stale_file, 1000);
  write_bytes(stale_dir / "model-00001-of-00002.safetensors", 1000);
  write_bytes(live_file, 10);

  auto index = nlohmann::json::parse(std::ifstream(out / "index.json"));
  auto& outputs = index["outputs"];
  ASSERT_EQ(outputs.size(), 3u);  // steps 200, 300 and 400
  const auto unlisted = outputs[2];
  ASSERT_EQ(unlisted["step"], 400);
  outputs.erase(2);
  auto gone = outputs[0];
  gone["path"] = (label_dir / "step_000000000999.h5").string();
  outputs.push_back(gone);
  std::ofstream(out / "index.json") << index.dump(2);

  opts.listen = "tcp://127.0.0.1:*";
  test::ServerThread restarted(opts);
  EXPECT_FALSE(std::filesystem::exists(stale_file));
  EXPECT_FALSE(std::filesystem::exists(stale_dir));
  EXPECT_TRUE(std::filesystem::exists(live_file));
  const auto after = nlohmann::json::parse(std::ifstream(out / "index.json"))["outputs"];
  ASSERT_EQ(after.size(), 3u) << after.dump(2);
  EXPECT_EQ(after[0]["step"], 200);
  EXPECT_EQ(after[1]["step"], 300);
  EXPECT_EQ(after[2]["path"], unlisted["path"]);
  for (const char* key : {"run_id", "label", "spec", "window", "axis", "step", "tokens", "sources", "source_tokens",
                          "weights", "dtype"})
    EXPECT_EQ(after[2][key], unlisted[key]) << key;
  EXPECT_TRUE(after[2]["recovered"].get<bool>());
  // A start with nothing to reconcile keeps every record as it is.
  const merger::OutputIndex unchanged(out);
  EXPECT_EQ(unchanged.json()["outputs"], after);
}

TEST(ServeFaults, LocalhostAndIpv6LoopbackEndpointsBind) {
  const auto out = test::temp_dir("bind-out");
  std::vector<std::string> listens{"tcp://localhost:*"};
  {
    const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) listens.push_back("tcp://[::1]:*");
    else std::cerr << "no IPv6 loopback here: tcp://[::1] is not tried\n";
    if (fd >= 0) ::close(fd);
  }
  for (const auto& listen : listens) {
    auto opts = test::server_options(out, "linear:200", 100);
    opts.listen = listen;
    std::unique_ptr<test::ServerThread> server;
    ASSERT_NO_THROW(server = std::make_unique<test::ServerThread>(opts)) << listen;
    ClientOptions co;
    co.endpoint = server->endpoint();  // the bound address, e.g. tcp://[::1]:PORT
    co.run_id = "bind";
    MergerClient client(co);
    auto model = test::make_model(100, kShapes);
    client.send_checkpoint(100, 100, 1e-3, test::views(model));
    EXPECT_NO_THROW(client.flush()) << listen;
    EXPECT_EQ(client.stats().checkpoints_acked, 1u) << listen;
  }
}

TEST(ServeFaults, AFrameLargerThanAChunkDisconnectsItsSenderNotTheDaemon) {
  const auto out = test::temp_dir("maxmsg-out");
  auto opts = test::server_options(out, "linear:200", 100);
  opts.core.max_chunk_bytes = 1 << 20;
  test::ServerThread server(opts);
  test::RawPeer bad(server.endpoint());
  bad.send_frames({std::string(merger::max_message_bytes(opts.core) + 1, '\xab')});
  EXPECT_FALSE(bad.next(1000).has_value());  // dropped unread (was: allocated, parsed, answered MALFORMED)
  bad.send_frames({"\xff\xfe not a protobuf"});  // a frame under the limit is still answered
  const auto st = status_of(server.endpoint());
  EXPECT_EQ(st.checkpoints_received(), 0u);
}

}  // namespace
}  // namespace wsm
