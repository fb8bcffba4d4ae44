// `wsm inspect` and `wsm convert` end to end, through the built executable.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint.h"
#include "tests/protocol/test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

using CmdResult = test::CommandResult;

CmdResult wsm(const std::string& args) { return test::run_wsm(args); }

TEST(Cli, InspectJsonListsEveryTensorAndMetadata) {
  TempDir dir;
  const Checkpoint c = test::sample_checkpoint(17);
  save_checkpoint(dir / "c.safetensors", c);
  const CmdResult r = wsm("inspect --json '" + (dir / "c.safetensors").string() + "'");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tensors"].size(), c.tensors.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < c.tensors.size(); ++i) {
    const auto& t = j["tensors"][i];
    EXPECT_EQ(t["name"], c.tensors[i].info.name);
    EXPECT_EQ(t["dtype"], std::string(dtype_name(c.tensors[i].info.dtype)));
    EXPECT_EQ(t["shape"].get<std::vector<std::int64_t>>(), c.tensors[i].info.shape);
    EXPECT_EQ(t["bytes"].get<std::uint64_t>(), c.tensors[i].data.size());
    total += c.tensors[i].data.size();
  }
  EXPECT_EQ(j["total_bytes"].get<std::uint64_t>(), total);
  EXPECT_EQ(j["format"], "safetensors");
  EXPECT_EQ(j["metadata"]["step"].get<std::int64_t>(), *c.meta.step);
  EXPECT_EQ(j["metadata"]["tokens"].get<std::int64_t>(), *c.meta.tokens);
  EXPECT_EQ(j["metadata"]["lr"].get<double>(), *c.meta.lr);
  EXPECT_EQ(j["metadata"]["run_id"], c.meta.run_id);
  const auto extra = j["metadata"]["extra"].get<std::map<std::string, std::string>>();
  EXPECT_EQ(extra, c.meta.extra);
}

TEST(Cli, InspectTextAndErrors) {
  TempDir dir;
  save_checkpoint(dir / "c.h5", test::sample_checkpoint(2));
  const CmdResult r = wsm("inspect '" + (dir / "c.h5").string() + "'");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("hdf5 checkpoint, 13 tensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.4.w/i8"), std::string::npos);
  const CmdResult bad = wsm("inspect '" + (dir / "missing.safetensors").string() + "'");
  EXPECT_NE(bad.rc, 0);
  const std::string& err = bad.err;
  EXPECT_NE(err.find("missing.safetensors"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  // --check finds the NaN/Inf the random bit patterns contain, and says so with a failing status.
  const CmdResult chk = wsm("inspect --check --json '" + (dir / "c.h5").string() + "'");
  EXPECT_NE(chk.rc, 0);
  EXPECT_GT(nlohmann::json::parse(chk.out)["tensors_with_nonfinite"].get<int>(), 0);
}

TEST(Cli, ConvertCastsFloatsOnlyAndShards) {
  TempDir dir;
  Checkpoint c;
  c.meta.step = 3;
  std::vector<float> w(3000);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.01f * float(i)) * 3.0f;
  Tensor tw{{"w", DType::f32, {30, 100}}, std::vector<std::byte>(w.size() * 4)};
  std::memcpy(tw.data.data(), w.data(), tw.data.size());
  c.tensors = {tw, test::random_tensor("step", DType::i64, {1}, 4)};
  save_checkpoint(dir / "in.h5", c);
  // --buffer 256 B: far below the 12 kB tensor, so it streams in pieces.
  const CmdResult r = wsm("convert '" + (dir / "in.h5").string() + "' '" + (dir / "out").string() +
                    "' --dtype bf16 --shard-size 4KB --buffer 256");
  ASSERT_EQ(r.rc, 0) << r.out;
  int shards = 0;
  for (const auto& e : fs::directory_iterator(dir / "out")) shards += e.path().extension() == ".safetensors";
  EXPECT_EQ(shards, 2);  // 6000 B of bf16 exceeds 4 KiB: the i64 tensor starts a second shard
  const Checkpoint out = load_checkpoint(dir / "out");
  EXPECT_EQ(out.meta, c.meta);
  ASSERT_EQ(out.tensors.size(), 2u);
  EXPECT_EQ(out.tensors[0].info.dtype, DType::bf16);
  std::vector<std::uint16_t> b(w.size());
  std::memcpy(b.data(), out.tensors[0].data.data(), b.size() * 2);
  for (std::size_t i = 0; i < w.size(); ++i) {
    // |x - bf16(x)| <= half an ulp of bf16 (8 significant bits).
    const float back = bf16_to_f32(b[i]);
    EXPECT_LE(std::fabs(back - w[i]), std::ldexp(std::fabs(w[i]), -8) + 1e-30f) << i;
  }
  EXPECT_EQ(out.tensors[1].info, c.tensors[1].info);
  EXPECT_TRUE(out.tensors[1].data == c.tensors[1].data);
  // And back to HDF5 without a cast: bit for bit.
  ASSERT_EQ(wsm("convert '" + (dir / "out").string() + "' '" + (dir / "back.h5").string() + "'").rc, 0);
  const Checkpoint back = load_checkpoint(dir / "back.h5");
  EXPECT_TRUE(back.tensors[0].data == out.tensors[0].data);
}

TEST(Cli, HelpHasExamples) {
  for (const char* cmd : {"inspect", "convert"}) {
    const CmdResult r = wsm(std::string(cmd) + " --help");
    EXPECT_EQ(r.rc, 0);
    EXPECT_NE(r.out.find("Examples:"), std::string::npos) << cmd;
  }
}

}  // namespace
}  // namespace wsm
