// SessionTable (the daemon's sessions, at most max_sessions): making room closes the longest idle
// session that is not receiving a checkpoint, or refuses OVER_BUDGET when every one is; closing
// hands the session back to the caller.
#include <gtest/gtest.h>

#include "merger/daemon/session_table.h"

namespace wsm::merger {
namespace {

Session session(const std::string& run, Clock::time_point last_seen, bool receiving = false) {
  Session s;
  s.run_id = run;
  s.last_seen = last_seen;
  if (receiving) {
    v1::CheckpointBegin b;
    b.set_step(100);
    s.partial = std::make_unique<CheckpointAssembler>(run, std::make_shared<const Manifest>(), b);
  }
  return s;
}

TEST(SessionTable, OpenFindServesClose) {
  SessionTable t(4);
  const auto t0 = Clock::now();
  t.open("a", session("r1", t0));
  t.open("b", session("r2", t0));
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.serves("r1"));
  EXPECT_FALSE(t.serves("r3"));
  ASSERT_NE(t.find("a"), t.end());
  EXPECT_EQ(t.find("a")->second.run_id, "r1");
  EXPECT_EQ(t.find("z"), t.end());
  t.open("a", session("r3", t0));  // a Hello for another run replaces the peer's session
  EXPECT_EQ(t.size(), 2u);
  EXPECT_FALSE(t.serves("r1"));
  const Session closed = t.close(t.find("a"));
  EXPECT_EQ(closed.run_id, "r3");
  EXPECT_FALSE(t.contains("a"));
  EXPECT_FALSE(t.serves("r3"));
}

TEST(SessionTable, MakeRoomClosesTheLongestIdleNotReceiving) {
  SessionTable t(3);
  const auto t0 = Clock::now();
  t.open("busy", session("r", t0, true));                      // idlest, but receiving
  t.open("idle", session("r", t0 + std::chrono::seconds(1)));  // the one to go
  t.open("fresh", session("r", t0 + std::chrono::seconds(5)));
  EXPECT_TRUE(t.full());
  const Session gone = t.make_room_for("new");
  EXPECT_EQ(gone.last_seen, t0 + std::chrono::seconds(1));
  EXPECT_FALSE(t.contains("idle"));
  EXPECT_TRUE(t.contains("busy"));
  EXPECT_TRUE(t.contains("fresh"));
  EXPECT_FALSE(t.full());
}

TEST(SessionTable, MakeRoomRefusesWhenEverySessionIsReceiving) {
  SessionTable t(2);
  const auto t0 = Clock::now();
  t.open("a", session("r", t0, true));
  t.open("b", session("r", t0, true));
  try {
    t.make_room_for("c");
    FAIL() << "no session can go";
  } catch (const wire::ProtocolError& e) {
    EXPECT_EQ(e.code(), v1::OVER_BUDGET);
    EXPECT_NE(std::string(e.what()).find("max_sessions"), std::string::npos);
  }
  EXPECT_EQ(t.size(), 2u);
}

TEST(SessionTable, ShowPeerIsHex) { EXPECT_EQ(show_peer(std::string("\x00\xab\x10", 3)), "00ab10"); }

}  // namespace
}  // namespace wsm::merger
