// Training runs through trainer::train(): resuming from state.h5 is bit-exact (2N steps in one go
// == N steps + resume for N more), checkpoints carry the metadata `wsm eval` needs, and batches are
// a pure function of (seed, step).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "wsm/formats/checkpoint.h"
#include "tests/synthetic_text.h"
#include "wsm/trainer/checkpoint_io.h"
#include "wsm/trainer/data.h"
#include "trainer/backend.h"
#include "wsm/schedules/schedule.h"
#include "wsm/trainer/train.h"

namespace wsm::trainer {
namespace {

namespace fs = std::filesystem;
using test::synthetic_text;

fs::path temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("wsm_trainer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TrainOptions tiny_options(const fs::path& dir, const fs::path& data, const fs::path& val, std::int64_t steps) {
  TrainOptions o;
  o.preset = "tiny";
  o.steps = steps;
  o.every = 5;
  o.out = dir;
  o.data = data;
  o.val = val;
  o.seed = 3;
  o.threads = 2;
  o.eval_positions = 2048;
  return o;
}

TEST(Batches, PureFunctionOfSeedAndStep) {
  std::vector<std::int32_t> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = std::int32_t(i % 17);
  const Batch a = batch_at(data, 5, 42, 4, 8), b = batch_at(data, 5, 42, 4, 8), c = batch_at(data, 5, 43, 4, 8),
              d = batch_at(data, 6, 42, 4, 8);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens, c.tokens);
  EXPECT_NE(a.tokens, d.tokens);
  // targets are the next tokens of the same window
  for (int r = 0; r < 4; ++r)
    for (int t = 0; t + 1 < 8; ++t) EXPECT_EQ(a.targets[r * 8 + t], a.tokens[r * 8 + t + 1]);
}

TEST(Vocab, RoundTripsAndRejectsUnknownBytes) {
  const std::string text = "hello, world\n";
  const Vocab v = Vocab::from_texts({&text});
  EXPECT_EQ(v.size(), 10);  // h e l o , space w r d \n
  const Vocab w = Vocab::from_hex(v.to_hex(), "test");
  EXPECT_TRUE(v == w);
  const auto ids = v.encode(text, "text");
  std::string back;
  for (auto id : ids) back += char(w.byte(id));
  EXPECT_EQ(back, text);
  EXPECT_THROW(v.encode("xyz", "other"), wsm::Error);
}

TEST(ValWindows, FixedPositions) {
  const ValWindows w = val_windows(1000, 32, 200);
  EXPECT_EQ(w.windows, 6);  // 200 positions round down to 6 windows of 32
  EXPECT_EQ(w.positions(), 192);
  EXPECT_EQ(val_windows(100, 32, 1 << 20).windows, 3);  // (100 - 1) / 32: the data run out first
}

TEST(Resume, BitExact) {
  const fs::path root = temp_dir("resume");
  const fs::path data = root / "train.txt", val = root / "val.txt";
  std::ofstream(data) << synthetic_text(20000);
  std::ofstream(val) << synthetic_text(3000).substr(1000);

  const auto straight = train(tiny_options(root / "straight", data, val, 20));
  train(tiny_options(root / "resumed", data, val, 10));
  auto resume_opts = tiny_options(root / "resumed", data, val, 20);
  resume_opts.resume = true;
  const auto resumed = train(resume_opts);
  EXPECT_EQ(straight.last_loss, resumed.last_loss);
  EXPECT_EQ(straight.val_loss, resumed.val_loss);

  const TrainState a = load_state(root / "straight" / "state.h5"), b = load_state(root / "resumed" / "state.h5");
  EXPECT_EQ(a.step, 20);
  EXPECT_EQ(b.step, 20);
  EXPECT_EQ(a.optim.t, 20);
  ASSERT_EQ(a.model.params.size(), b.model.params.size());
  EXPECT_EQ(std::memcmp(a.model.params.data(), b.model.params.data(), a.model.params.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.optim.m.data(), b.optim.m.data(), a.optim.m.size() * 4), 0);
  EXPECT_EQ(std::memcmp(a.optim.v.data(), b.optim.v.data(), a.optim.v.size() * 4), 0);
  // and training did change the weights (a resume of a no-op would also be "exact")
  const auto init = init_params(a.model.config, 3);
  EXPECT_NE(std::memcmp(a.model.params.data(), init.data(), init.size() * 4), 0);

  // checkpoints every 5 steps, parameters only, with what `wsm eval` and the merger need
  for (int s : {5, 10, 15, 20}) {
    char name[64];
    std::snprintf(name, sizeof name, "step_%012d.h5", s);  // the one naming rule: docs/checkpoint-format.md
    ASSERT_TRUE(fs::exists(root / "straight" / name)) << name;
  }
  const ModelFile m = load_model(root / "straight" / "step_000000000020.h5");
  EXPECT_EQ(m.meta.step, 20);
  EXPECT_EQ(m.meta.tokens, 20 * 8 * 32);  // tiny: batch 8, ctx 32
  ASSERT_TRUE(m.meta.lr.has_value());
  EXPECT_GT(*m.meta.lr, 0.0);
  EXPECT_EQ(m.config, a.model.config);
  EXPECT_EQ(std::memcmp(m.params.data(), a.model.params.data(), m.params.size() * 4), 0);
  auto reader = open_checkpoint(root / "straight" / "step_000000000020.h5");
  EXPECT_EQ(reader->tensors().size(), param_layout(m.config).size());  // no optimizer state in it
  EXPECT_EQ(reader->info("h.0.attn.c_attn.weight").shape, (std::vector<std::int64_t>{96, 32}));
  fs::remove_all(root);
}

// WSD from a trunk's kept state (what `wsm compare study` does) equals a WSD run from scratch with
// the same seed, bit for bit: the trunk's constant LR and the WSD schedule agree before the decay.
TEST(Branch, FromKeptStateEqualsWsdFromScratch) {
  const fs::path root = temp_dir("branch");
  const fs::path data = root / "train.txt", val = root / "val.txt";
  std::ofstream(data) << synthetic_text(20000);
  std::ofstream(val) << synthetic_text(3000).substr(1000);
  const std::string wsd = "wsd:warmup=20,decay=10,shape=1-sqrt,total=40,peak=3e-3";  // tiny preset's warmup, peak

  auto scratch = tiny_options(root / "scratch", data, val, 40);
  scratch.schedule = wsd;
  const auto a = train(scratch);

  auto trunk = tiny_options(root / "trunk", data, val, 40);
  trunk.keep_states = {30};
  train(trunk);
  ASSERT_TRUE(fs::exists(root / "trunk" / state_file_name(30)));
  EXPECT_FALSE(fs::exists(root / "trunk" / state_file_name(25)));  // only the steps asked for

  auto branch = tiny_options(root / "branch", data, val, 40);
  branch.schedule = wsd;
  branch.from_state = root / "trunk" / state_file_name(30);
  const auto b = train(branch);
  EXPECT_EQ(a.last_loss, b.last_loss);
  EXPECT_EQ(a.val_loss, b.val_loss);

  const TrainState x = load_state(root / "scratch" / "state.h5"), y = load_state(root / "branch" / "state.h5");
  ASSERT_EQ(x.model.params.size(), y.model.params.size());
  EXPECT_EQ(std::memcmp(x.model.params.data(), y.model.params.data(), x.model.params.size() * 4), 0);
  EXPECT_EQ(std::memcmp(x.optim.m.data(), y.optim.m.data(), x.optim.m.size() * 4), 0);
  EXPECT_EQ(std::memcmp(x.optim.v.data(), y.optim.v.data(), x.optim.v.size() * 4), 0);
  // The decay did change the result: the trunk at 40 differs from both.
  const TrainState t = load_state(root / "trunk" / "state.h5");
  EXPECT_NE(std::memcmp(t.model.params.data(), x.model.params.data(), x.model.params.size() * 4), 0);
  // The branch's own checkpoints start after the branch point and record the WSD schedule.
  EXPECT_FALSE(fs::exists(root / "branch" / checkpoint_file_name(30)));
  const ModelFile m = load_model(root / "branch" / checkpoint_file_name(40));
  EXPECT_EQ(m.meta.extra.at("train.schedule"), parse_schedule(wsd).to_string());
  EXPECT_EQ(*m.meta.lr, parse_schedule(wsd).lr_at(39));

  auto both = branch;
  both.resume = true;
  EXPECT_THROW(train(both), wsm::Error);  // --resume and --from-state exclude each other
  fs::remove_all(root);
}

TEST(Train, CudaDeviceFailsClearlyWithoutGpu) {
  if (cuda_device_available()) GTEST_SKIP() << "a CUDA device is present; nothing to check here";
  const fs::path root = temp_dir("nocuda");
  std::ofstream(root / "t.txt") << synthetic_text(5000);
  auto o = tiny_options(root / "run", root / "t.txt", root / "t.txt", 2);
  o.device = wsm::trainer::Device::cuda;
  try {
    train(o);
    FAIL() << "--device cuda without a GPU should throw";
  } catch (const wsm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace wsm::trainer
