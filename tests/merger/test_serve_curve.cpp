// CURVE: a non-loopback bind is refused without it; with it, only clients whose public key is in
// the allow file get through (the ZAP handler), on 127.0.0.1 here.
#include <fstream>

#include <gtest/gtest.h>

#include "serve_test_util.h"

namespace wsm {
namespace {

struct KeyPair {
  std::string pub, sec;
};
KeyPair keypair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) throw Error("libzmq built without CURVE");
  return {pub, sec};
}

TEST(ServeCurve, NonLoopbackBindWithoutCurveIsRefused) {
  auto opts = test::server_options(test::temp_dir("curve-refuse"), "linear:200", 100);
  opts.listen = "tcp://0.0.0.0:*";
  try {
    merger::Server s(opts);
    FAIL() << "bound to 0.0.0.0 without CURVE";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CURVE"), std::string::npos);
  }
}

TEST(ServeCurve, OnlyListedClientsConnect) {
  const auto dir = test::temp_dir("curve");
  const auto server_keys = keypair(), allowed = keypair(), stranger = keypair();
  std::ofstream(dir / "server.key") << "# server secret\n" << server_keys.sec << "\n";
  std::ofstream(dir / "allow") << "# clients\n" << allowed.pub << "\n";

  auto opts = test::server_options(dir / "out", "linear:200", 100);
  opts.curve_secret_key_file = (dir / "server.key").string();
  opts.curve_allow_file = (dir / "allow").string();
  test::ServerThread server(opts);
  EXPECT_EQ(server.server().public_key(), server_keys.pub);

  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "secure";
  co.curve_server_key = server_keys.pub;
  co.curve_public_key = allowed.pub;
  co.curve_secret_key = allowed.sec;
  MergerClient client(co);
  auto model = test::make_model(100, {{8}});
  client.send_checkpoint(100, 100, 1e-3, test::views(model));
  EXPECT_NO_THROW(client.flush());
  EXPECT_EQ(client.stats().checkpoints_acked, 1u);

  // A client with a key not in the allow file never gets an answer.
  co.curve_public_key = stranger.pub;
  co.curve_secret_key = stranger.sec;
  co.reconnect_timeout_ms = 600;
  co.stall_timeout_ms = 200;
  MergerClient refused(co);
  refused.send_checkpoint(200, 200, 1e-3, test::views(model));
  EXPECT_THROW(refused.flush(), Error);
  EXPECT_EQ(refused.stats().checkpoints_acked, 0u);

  // Nor does a plain (non-CURVE) peer.
  test::RawPeer plain(server.endpoint());
  auto st = wire::envelope();
  st.mutable_status_request();
  plain.send(st);
  EXPECT_FALSE(plain.next(500).has_value());
}

TEST(ServeCurve, ARunBelongsToTheKeyThatStartedIt) {
  const auto dir = test::temp_dir("curve-owner");
  const auto server_keys = keypair(), owner = keypair(), other = keypair();
  std::ofstream(dir / "server.key") << server_keys.sec << "\n";
  std::ofstream(dir / "allow") << owner.pub << "\n" << other.pub << "\n";
  auto opts = test::server_options(dir / "out", "linear:200", 100);
  opts.curve_secret_key_file = (dir / "server.key").string();
  opts.curve_allow_file = (dir / "allow").string();
  test::ServerThread server(opts);

  ClientOptions co;
  co.endpoint = server.endpoint();
  co.run_id = "owned";
  co.curve_server_key = server_keys.pub;
  co.curve_public_key = owner.pub;
  co.curve_secret_key = owner.sec;
  auto model = test::make_model(100, {{8}});
  {
    MergerClient client(co);
    client.send_checkpoint(100, 100, 1e-3, test::views(model));
    EXPECT_NO_THROW(client.flush());
  }
  co.curve_public_key = other.pub;  // allowed, but not this run's key
  co.curve_secret_key = other.sec;
  MergerClient squatter(co);
  squatter.send_checkpoint(200, 200, 1e-3, test::views(model));
  try {
    squatter.flush();
    FAIL() << "another key sent to the run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another client key"), std::string::npos) << e.what();
  }
  co.run_id = "its-own";
  MergerClient fine(co);
  fine.send_checkpoint(100, 100, 1e-3, test::views(model));
  EXPECT_NO_THROW(fine.flush());
}

}  // namespace
}  // namespace wsm
