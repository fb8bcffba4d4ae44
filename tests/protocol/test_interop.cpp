// Cross-tool checks against independent Python code (tests/protocol/interop.py): files written by
// h5py/numpy read exactly here; files written here read exactly with h5py and a numpy reader of
// safetensors (plus the `safetensors` package when it is installed).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/safetensors_header.h"
#include "tests/protocol/test_util.h"

namespace wsm {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

const std::string kScript = std::string(WSM_SOURCE_DIR) + "/tests/protocol/interop.py";

int run_python(const std::string& args) {
  const std::string cmd = std::string(WSM_PYTHON) + " " + kScript + " " + args;
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool python_ready() {
  const std::string cmd = std::string(WSM_PYTHON) + " -c 'import numpy, h5py' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

bool torch_ready() {
  const std::string cmd = std::string(WSM_PYTHON) + " -c 'import torch' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

#define REQUIRE_PYTHON() \
  if (!python_ready()) GTEST_SKIP() << WSM_PYTHON << " lacks numpy/h5py (tools/install-deps.sh installs them)"

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Reference directory: manifest.json + one raw .bin per tensor (see interop.py).
void save_ref(const fs::path& dir, const Checkpoint& c) {
  fs::create_directories(dir);
  nlohmann::json manifest = nlohmann::json::array();
  for (std::size_t i = 0; i < c.tensors.size(); ++i) {
    const auto& t = c.tensors[i];
    const std::string file = std::to_string(i) + ".bin";
    std::ofstream(dir / file, std::ios::binary)
        .write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
    manifest.push_back({{"name", t.info.name}, {"dtype", dtype_name(t.info.dtype)}, {"shape", t.info.shape},
                        {"file", file}});
  }
  std::ofstream(dir / "manifest.json") << manifest.dump();
}

std::vector<Tensor> load_ref(const fs::path& dir) {
  nlohmann::json manifest;
  std::ifstream(dir / "manifest.json") >> manifest;
  std::vector<Tensor> out;
  for (const auto& e : manifest) {
    Tensor t;
    t.info.name = e["name"];
    t.info.dtype = *parse_dtype(e["dtype"].get<std::string>());
    t.info.shape = e["shape"].get<std::vector<std::int64_t>>();
    std::ifstream in(dir / e["file"].get<std::string>(), std::ios::binary);
    const std::string raw(std::istreambuf_iterator<char>(in), {});
    t.data.resize(raw.size());
    if (!raw.empty()) std::memcpy(t.data.data(), raw.data(), raw.size());
    out.push_back(std::move(t));
  }
  return out;
}

void save_meta_json(const fs::path& file, const CheckpointMeta& meta) {
  nlohmann::json j = meta_to_strings(meta);
  j.erase("format");
  std::ofstream(file) << j.dump();
}

void expect_tensors(const Checkpoint& got, const std::vector<Tensor>& want, bool same_order) {
  ASSERT_EQ(got.tensors.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    const Tensor* g = &got.tensors[i];
    if (!same_order) {
      g = nullptr;
      for (const auto& t : got.tensors)
        if (t.info.name == want[i].info.name) g = &t;
      ASSERT_NE(g, nullptr) << want[i].info.name;
    }
    EXPECT_EQ(g->info, want[i].info);
    EXPECT_TRUE(g->data == want[i].data) << want[i].info.name;
  }
}

TEST(Interop, H5pyWrittenFileReadsExactly) {
  REQUIRE_PYTHON();
  TempDir dir;
  ASSERT_EQ(run_python("write_h5 " + q(dir / "py.h5") + " " + q(dir / "ref")), 0);
  const Checkpoint c = load_checkpoint(dir / "py.h5");
  expect_tensors(c, load_ref(dir / "ref"), /*same_order=*/false);
  EXPECT_EQ(c.meta.step, 500);
  EXPECT_EQ(c.meta.lr, 0.003);
  EXPECT_EQ(c.meta.run_id, "h5py-run");
  EXPECT_EQ(c.meta.extra.at("note"), "written by h5py");
  // Byte-range reads through a chunked, gzip-compressed, shuffled dataset.
  auto r = open_checkpoint(dir / "py.h5");
  const auto ref = load_ref(dir / "ref");
  for (const auto& t : ref) {
    if (t.info.name != "gz") continue;
    std::vector<std::byte> part(1001);
    r->read("gz", 333, part);
    EXPECT_TRUE(std::equal(part.begin(), part.end(), t.data.begin() + 333));
  }
}

TEST(Interop, NumpyWrittenSafetensorsReadsExactly) {
  REQUIRE_PYTHON();
  TempDir dir;
  ASSERT_EQ(run_python("write_safetensors " + q(dir / "np.safetensors") + " " + q(dir / "ref")), 0);
  const Checkpoint c = load_checkpoint(dir / "np.safetensors");
  expect_tensors(c, load_ref(dir / "ref"), /*same_order=*/true);  // storage order, not name order
  EXPECT_EQ(c.meta.step, 42);
  EXPECT_EQ(c.meta.tokens, 1000000);
  EXPECT_EQ(c.meta.lr, 0.0006);
  EXPECT_EQ(c.meta.run_id, "np-writer");
  EXPECT_EQ(c.meta.extra, (std::map<std::string, std::string>{{"custom", "value"}}));
}

class OursReadInPython : public ::testing::TestWithParam<std::pair<std::string, WriteOptions>> {};

TEST_P(OursReadInPython, BitExact) {
  REQUIRE_PYTHON();
  TempDir dir;
  const auto& [file, options] = GetParam();
  Checkpoint c = test::sample_checkpoint(21);
  c.tensors.push_back(test::random_tensor("odd%name.with/slashes", DType::f32, {3}, 5));
  c.tensors.push_back(test::random_tensor(".", DType::bf16, {2, 2}, 6));
  save_checkpoint(dir / file, c, options);
  save_ref(dir / "ref", c);
  save_meta_json(dir / "meta.json", c.meta);
  const std::string mode = file.ends_with(".h5") ? "check_h5" : "check_safetensors";
  // One case also checks the documented bf16 -> torch one-liner (importing torch takes seconds).
  const std::string extra = file == "ours.h5" ? (torch_ready() ? " torch" : " notorch") : file.ends_with(".h5") ? " notorch" : "";
  EXPECT_EQ(run_python(mode + " " + q(dir / file) + " " + q(dir / "ref") + " " + q(dir / "meta.json") + extra), 0);
}

INSTANTIATE_TEST_SUITE_P(Formats, OursReadInPython,
                         ::testing::Values(std::pair<std::string, WriteOptions>{"ours.h5", {}},
                                           std::pair<std::string, WriteOptions>{"z.h5", {.compression = 4, .chunk_bytes = 64}},
                                           std::pair<std::string, WriteOptions>{"ours.safetensors", {}},
                                           std::pair<std::string, WriteOptions>{"shards", {.shard_bytes = 200}}));

}  // namespace
}  // namespace wsm
