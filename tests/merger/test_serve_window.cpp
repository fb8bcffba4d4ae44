// Window store, emulation parsing and the periodic rule, without sockets.
#include <gtest/gtest.h>

#include "merger/daemon/emission.h"
#include "merger/daemon/window_store.h"
#include "serve_test_util.h"

namespace wsm::merger {
namespace {

std::shared_ptr<StoredCheckpoint> ckpt(std::int64_t step, std::uint64_t floats = 16) {
  auto c = std::make_shared<StoredCheckpoint>();
  c->run_id = "run";
  c->step = step;
  c->tokens = step * 10;
  c->tensors = {TensorInfo{"w", DType::f32, {static_cast<std::int64_t>(floats)}}};
  std::vector<std::byte> bytes(floats * 4);
  for (std::uint64_t i = 0; i < floats; ++i) {
    const float v = test::tensor_value(0, step, i);
    std::memcpy(bytes.data() + i * 4, &v, 4);
  }
  c->data.push_back(tensor_bytes(std::move(bytes)));
  return c;
}

// The four items both forms below spell: cosine,floor=0.1 over 800 steps, 1-sqrt over 50M tokens,
// ema:alpha=0.2 over 1000 steps, weights=0.2,0.8 over 300 steps.
void expect_the_four_items(const std::vector<Emulation>& e) {
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].spec, parse_merge_spec("cosine,floor=0.1"));
  EXPECT_EQ(e[0].window, 800);
  EXPECT_EQ(e[0].axis, Axis::steps);
  EXPECT_EQ(e[1].window, 50'000'000);
  EXPECT_EQ(e[1].axis, Axis::tokens);
  EXPECT_EQ(e[2].spec, MergeSpec(EmaRule{0.2}));
  EXPECT_EQ(e[3].spec, MergeSpec(TableRule{TableRule::Kind::merge_weights, {0.2, 0.8}}));
  EXPECT_EQ(e[3].window, 300);
}

TEST(ServeWindow, ParsesEmulationItems) {
  expect_the_four_items(parse_emulations("cosine,floor=0.1@800;1-sqrt@50Mt; ema:alpha=0.2@1000;weights=0.2,0.8@300"));
  EXPECT_THROW(parse_emulations("1-sqrt"), Error);
  EXPECT_THROW(parse_emulations("1-sqrt@800@900"), Error);
  EXPECT_THROW(parse_emulations("1-sqrt@0"), Error);
  EXPECT_THROW(parse_emulations("nope@100"), Error);
  EXPECT_THROW(parse_emulations(" ; "), Error);
  EXPECT_EQ(parse_window("1.5Kt").value, 1500);
}

// The deprecated SHAPE:WINDOW,... form still parses (with a warning), as it always did.
TEST(ServeWindow, ParsesLegacyEmulationLists) {
  expect_the_four_items(parse_emulations("cosine,floor=0.1:800,1-sqrt:50Mt,ema:alpha=0.2:1000,weights=0.2,0.8:300"));
  EXPECT_THROW(parse_emulations("1-sqrt:0"), Error);
  EXPECT_THROW(parse_emulations("1-sqrt:12.5"), Error);
  EXPECT_THROW(parse_emulations("nope:100"), Error);
}

TEST(ServeWindow, PeriodicRule) {
  EXPECT_TRUE(emission_due(-1, 0, 200));
  EXPECT_FALSE(emission_due(-1, 100, 200));
  EXPECT_FALSE(emission_due(100, 150, 200));
  EXPECT_TRUE(emission_due(150, 200, 200));
  EXPECT_TRUE(emission_due(190, 310, 200));  // uneven checkpoints: first past each multiple
  EXPECT_FALSE(emission_due(200, 399, 200));
}

TEST(ServeWindow, RetentionKeepsTheLargestWindowAndItsAnchor) {
  WindowStore store({}, parse_emulations("linear:200,1-sqrt:400"));
  for (std::int64_t s = 100; s <= 1000; s += 100) store.add(ckpt(s));
  const auto& e = store.entries("run");
  ASSERT_FALSE(e.empty());
  EXPECT_EQ(e.front()->step, 600);  // newest 1000 - 400
  EXPECT_EQ(e.back()->step, 1000);
  EXPECT_EQ(e.size(), 5u);
  EXPECT_EQ(store.memory_bytes(), 5u * 64u);
  EXPECT_THROW(store.add(ckpt(1000)), Error);
}

TEST(ServeWindow, TokenWindowsUseTokens) {
  WindowStore store({}, parse_emulations("linear:2000t"));  // tokens = 10 x step
  for (std::int64_t s = 100; s <= 600; s += 100) store.add(ckpt(s));
  EXPECT_TRUE(store.covered("run", store.emulations()[0]));
  EXPECT_EQ(store.entries("run").front()->tokens, 4000);  // anchor at <= 6000 - 2000
}

TEST(ServeWindow, SpillsOverBudgetAndDeletesDroppedFilesAfterTheLastReader) {
  const auto dir = test::temp_dir("window-store");
  WindowStore store({dir, 100}, parse_emulations("linear:100"));  // budget: one checkpoint (64 B)
  store.add(ckpt(100));
  EXPECT_TRUE(store.entries("run")[0]->in_memory()) << "not spilled before its file is written";
  store.flush();  // the background writer persists, then what is over budget spills
  store.add(ckpt(200));
  store.flush();
  EXPECT_FALSE(store.entries("run")[0]->in_memory());
  EXPECT_TRUE(store.entries("run")[1]->in_memory());
  EXPECT_LE(store.memory_bytes(), 100u);
  Entry held = store.entries("run")[0];  // as a queued output would
  const auto file = held->file;
  ASSERT_TRUE(std::filesystem::exists(file));
  auto dropped = store.add(ckpt(300));  // 100 leaves the window (anchor 200)
  store.flush();
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0]->step, 100);
  dropped.clear();
  EXPECT_EQ(store.entries("run").front()->step, 200);
  EXPECT_TRUE(std::filesystem::exists(file)) << "deleted while still read";
  // The spilled copy reads back the same bytes from disk.
  auto reader = open_stored(held);
  std::vector<std::byte> got(64);
  reader->read("w", 0, got);
  float v;
  std::memcpy(&v, got.data() + 4 * 5, 4);
  EXPECT_EQ(v, test::tensor_value(0, 100, 5));
  reader.reset();
  held.reset();
  EXPECT_FALSE(std::filesystem::exists(file));

  // A new store over the same directory rebuilds the window.
  WindowStore again({dir, 1000}, parse_emulations("linear:100"));
  again.rebuild_from_disk();
  ASSERT_EQ(again.entries("run").size(), 2u);
  EXPECT_EQ(again.entries("run")[0]->step, 200);
  EXPECT_EQ(again.entries("run")[1]->tokens, 3000);
}

TEST(ServeWindow, RebuildSkipsFilesOutsideTheirRunsFolder) {
  // An older wsm stored run "a/b" in folder "a_b", next to run "a_b": on rebuild a run is read only
  // from its own folder, so neither can return the other's tensors.
  const auto dir = test::temp_dir("window-foreign");
  std::filesystem::create_directories(dir / "a_b");
  auto theirs = ckpt(100);
  theirs->run_id = "a/b";
  persist(*theirs, dir / "a_b" / "step_000000000100.h5");
  auto ours = ckpt(200);
  ours->run_id = "a_b";
  persist(*ours, dir / "a_b" / "step_000000000200.h5");
  WindowStore store({dir, 1000}, parse_emulations("linear:100"));
  store.rebuild_from_disk();
  EXPECT_EQ(store.runs(), std::vector<std::string>{"a_b"});
  ASSERT_EQ(store.entries("a_b").size(), 1u);
  EXPECT_EQ(store.entries("a_b")[0]->step, 200);
}

}  // namespace
}  // namespace wsm::merger
