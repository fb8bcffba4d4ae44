// Bad input: every broken file gets a one-line wsm::Error naming the file (and tensor), never a
// crash or a silently wrong checkpoint.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>

#include <nlohmann/json.hpp>

#include "wsm/core/printable.h"
#include "wsm/formats/atomic_file.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/formats/safetensors_header.h"
#include "wsm/formats/sharded_checkpoint.h"
#include "tests/protocol/test_util.h"

namespace wsm {
namespace {

using test::TempDir;
namespace fs = std::filesystem;

void write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_raw(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A safetensors file from a header JSON and a data section.
std::string st_file(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((std::uint64_t(json.size()) >> (8 * i)) & 0xff);
  return out + json + data;
}

// Runs `f`, expects a wsm::Error whose single-line message contains every one of `parts`.
template <typename F>
void expect_error(F f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning " << *parts.begin();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

struct BadCase {
  const char* what;
  std::string json;
  std::string data;
  std::vector<std::string> expect;
};

TEST(BadSafetensors, EachRuleEnforced) {
  TempDir dir;
  const std::string d8(8, 'x');
  const std::vector<BadCase> cases = {
      {"not json", "{not json", d8, {"corrupt safetensors header"}},
      {"no brace", "[1,2]", "", {"does not start with '{'"}},
      {"unknown dtype", R"({"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", d8, {"'w'", "unknown dtype"}},
      {"shape mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8, {"'w'", "shape x dtype"}},
      {"lying end", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8, {"'w'", "past the data"}},
      {"overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       d8, {"'b'", "overlaps"}},
      {"hole", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8, {"'a'", "hole"}},
      {"trailing", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8, {"trailing"}},
      {"duplicate", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       d8, {"duplicate key 'a'"}},
      {"negative dim", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8, {"'a'", "non-negative"}},
      {"end < begin", R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}})", d8, {"'a'", "end before begin"}},
      {"missing field", R"({"a":{"dtype":"F32","shape":[2]}})", d8, {"'a'", "data_offsets"}},
      {"meta not string", R"({"__metadata__":{"k":5}})", "", {"__metadata__", "'k'"}},
      {"bad step", R"({"__metadata__":{"wsm.step":"12x"}})", "", {"wsm.step", "12x"}},
      {"shape overflow", R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", d8, {"'a'", "overflow"}},
      // A NUL ends nlohmann's input early: the garbage after it must not be ignored.
      {"NUL then garbage", std::string(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})") + '\0' + "garbage}",
       d8, {"NUL byte at offset 53"}},
      {"NUL padding", std::string("{}") + std::string(6, '\0'), "", {"NUL byte at offset 2"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const fs::path p = dir / "bad.safetensors";
    write_raw(p, st_file(c.json, c.data));
    std::vector<std::string> parts = c.expect;
    parts.push_back(p.string());
    try {
      open_checkpoint(p);
      ADD_FAILURE() << "accepted: " << c.what;
    } catch (const Error& e) {
      for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  }
}

TEST(BadSafetensors, TruncatedAtEveryLength) {
  TempDir dir;
  save_checkpoint(dir / "good.safetensors", test::sample_checkpoint(5));
  const std::string full = read_raw(dir / "good.safetensors");
  for (std::size_t n = 0; n < full.size(); n += std::max<std::size_t>(1, full.size() / 97)) {
    write_raw(dir / "cut.safetensors", full.substr(0, n));
    expect_error([&] { open_checkpoint(dir / "cut.safetensors"); }, {(dir / "cut.safetensors").string()});
  }
  write_raw(dir / "tiny.safetensors", "abc");
  expect_error([&] { open_checkpoint(dir / "tiny.safetensors"); }, {"truncated", "tiny.safetensors"});
  std::string huge(8, '\xff');
  write_raw(dir / "huge.safetensors", huge + "{}");
  expect_error([&] { open_checkpoint(dir / "huge.safetensors"); }, {"exceeds the limit", "huge.safetensors"});
}

TEST(BadSafetensors, AcceptsSpecCornerCases) {
  // Valid per the format: empty header object, zero-sized tensors sharing an offset, padding spaces.
  TempDir dir;
  write_raw(dir / "e.safetensors", st_file("{}", ""));
  EXPECT_TRUE(open_checkpoint(dir / "e.safetensors")->tensors().empty());
  write_raw(dir / "z.safetensors",
            st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I8","shape":[2],"data_offsets":[0,2]},)"
                    R"("c":{"dtype":"BOOL","shape":[0,5],"data_offsets":[2,2]}}    )",
                    "\x01\x02"));
  auto r = open_checkpoint(dir / "z.safetensors");
  ASSERT_EQ(r->tensors().size(), 3u);
  EXPECT_EQ(r->tensors()[0].name, "a");
  EXPECT_EQ(r->tensors()[2].name, "c");
}

TEST(BadHdf5, GarbageAndTruncation) {
  TempDir dir;
  write_raw(dir / "junk.h5", std::string(4096, 'j'));
  expect_error([&] { open_checkpoint(dir / "junk.h5"); }, {"junk.h5", "not an HDF5 file"});
  Checkpoint c = test::sample_checkpoint(2);
  c.tensors.push_back(test::random_tensor("large", DType::f32, {256, 256}, 3));
  save_checkpoint(dir / "good.h5", c);
  const std::string full = read_raw(dir / "good.h5");
  for (std::size_t n : {std::size_t(0), std::size_t(100), full.size() / 3, full.size() / 2, full.size() - 1000}) {
    write_raw(dir / "cut.h5", full.substr(0, n));
    // Truncation shows either at open or at the first read of a tensor past the cut; never silently.
    expect_error(
        [&] {
          auto r = open_checkpoint(dir / "cut.h5");
          for (const auto& t : r->tensors()) {
            std::vector<std::byte> buf(t.nbytes());
            r->read(t.name, 0, buf);
          }
        },
        {"cut.h5"});
  }
}

bool h5py_ready() {
  return std::system((std::string(WSM_PYTHON) + " -c 'import h5py' >/dev/null 2>&1").c_str()) == 0;
}

int python(const std::string& code) {
  return std::system((std::string(WSM_PYTHON) + " -c \"" + code + "\"").c_str());
}

TEST(BadHdf5, UnsupportedTypeAndVersion) {
  if (!h5py_ready()) GTEST_SKIP() << "h5py not importable by " << WSM_PYTHON;
  TempDir dir;
  const std::string p1 = (dir / "str.h5").string(), p2 = (dir / "v99.h5").string();
  ASSERT_EQ(python("import h5py, numpy as np; f = h5py.File('" + p1 +
                   "', 'w'); f['ok'] = np.zeros(2); f['names'] = np.array([b'ab', b'cd'])"),
            0);
  expect_error([&] { open_checkpoint(p1); }, {"str.h5", "names", "unsupported HDF5 element type"});
  ASSERT_EQ(python("import h5py; f = h5py.File('" + p2 + "', 'w'); f.attrs['wsm.format_version'] = 99"), 0);
  expect_error([&] { open_checkpoint(p2); }, {"v99.h5", "version 99"});
}

// Text from the file lands in errors escaped, so they stay one line (fuzz_hdf5 found a root
// attribute wsm.tokens = "'\nun'" making a two-line error, docs/fuzzing.md).
TEST(BadHdf5, FileTextInErrorsStaysOneLine) {
  if (!h5py_ready()) GTEST_SKIP() << "h5py not importable by " << WSM_PYTHON;
  TempDir dir;
  const std::string tok = (dir / "tok.h5").string(), name = (dir / "name.h5").string();
  ASSERT_EQ(python("import h5py; f = h5py.File('" + tok + "', 'w'); f.attrs['wsm.tokens'] = '\\nun'"), 0);
  expect_error([&] { open_checkpoint(tok); }, {"tok.h5", "metadata wsm.tokens='\\nun' is not a valid number"});
  // Reported by the helper process, whose messages the parent makes one line.
  ASSERT_EQ(python("import h5py, numpy as np; f = h5py.File('" + name + "', 'w'); f['bad\\nname'] = np.array([b'ab'])"),
            0);
  expect_error([&] { open_checkpoint(name); }, {"name.h5", "/bad\\nname", "unsupported HDF5 element type"});
}

TEST(BadSafetensors, FileTextInErrorsStaysOneLine) {
  TempDir dir;
  write_raw(dir / "meta.safetensors", st_file(R"({"__metadata__":{"wsm.step":"1\n2"}})", ""));
  expect_error([&] { open_checkpoint(dir / "meta.safetensors"); }, {"meta.safetensors", "wsm.step='1\\n2'"});
  write_raw(dir / "name.safetensors", st_file(R"({"a\tb\u0001":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}})", "x"));
  expect_error([&] { open_checkpoint(dir / "name.safetensors"); }, {"tensor 'a\\tb\\x01'", "unknown dtype 'Q8'"});
}

TEST(Printable, EscapesControlCharactersOnly) {
  EXPECT_EQ(printable("plain text, UTF-8 \xc3\xa9 and \\ stay"), "plain text, UTF-8 \xc3\xa9 and \\ stay");
  EXPECT_EQ(printable(std::string("a\nb\rc\td\x01" "e\x7f" "\0f", 12)), "a\\nb\\rc\\td\\x01e\\x7f\\x00f");
}

TEST(BadSharded, MissingShardWrongMapAndDuplicates) {
  TempDir dir;
  save_checkpoint(dir / "set", test::sample_checkpoint(1), {.shard_bytes = 200});
  fs::path victim;
  for (const auto& e : fs::directory_iterator(dir / "set"))
    if (e.path().extension() == ".safetensors") victim = e.path();
  std::string first_tensor_in_victim = open_checkpoint(victim)->tensors().front().name;
  fs::rename(victim, dir / "moved.safetensors");
  expect_error([&] { open_checkpoint(dir / "set"); },
               {kShardIndexName, victim.filename().string(), "missing"});
  fs::rename(dir / "moved.safetensors", victim);
  EXPECT_NO_THROW(open_checkpoint(dir / "set"));

  // weight_map sends a tensor to the wrong shard.
  nlohmann::json idx;
  std::ifstream(dir / "set" / kShardIndexName) >> idx;
  std::string other;
  for (auto& [t, f] : idx["weight_map"].items())
    if (f != victim.filename().string()) other = f;
  idx["weight_map"][first_tensor_in_victim] = other;
  std::ofstream(dir / "set" / kShardIndexName) << idx.dump();
  expect_error([&] { open_checkpoint(dir / "set"); }, {first_tensor_in_victim});

  write_raw(dir / "set" / kShardIndexName, "{\"weight_map\": ");
  expect_error([&] { open_checkpoint(dir / "set" / kShardIndexName); }, {"corrupt index"});

  // Two shards (no index) holding the same tensor.
  fs::create_directories(dir / "dup");
  Checkpoint one;
  one.tensors.push_back(test::random_tensor("same", DType::f32, {2}, 1));
  save_checkpoint(dir / "dup" / "a.safetensors", one);
  save_checkpoint(dir / "dup" / "b.safetensors", one);
  expect_error([&] { open_checkpoint(dir / "dup"); }, {"'same'", "b.safetensors"});
  fs::create_directories(dir / "emptydir");
  expect_error([&] { open_checkpoint(dir / "emptydir"); }, {"emptydir", "no *.safetensors"});
}

// A shard name with a NUL would open the file named by its part before the NUL ("a.safetensors"),
// and "." the directory itself: both are refused as names of files beside the index.
TEST(BadSharded, NulAndDotShardNamesRefused) {
  TempDir dir;
  Checkpoint one;
  one.tensors.push_back(test::random_tensor("w", DType::f32, {2}, 1));
  save_checkpoint(dir / "a.safetensors", one);
  for (const std::string& name : {std::string("a.safetensors") + '\0' + "x", std::string(".")}) {
    SCOPED_TRACE(name.size());
    const nlohmann::json idx = {{"weight_map", {{"w", name}}}};
    write_raw(dir / kShardIndexName, idx.dump());
    expect_error([&] { open_checkpoint(dir / kShardIndexName); }, {kShardIndexName, "'w'", "not a file beside the index"});
  }
}

// fuzz_sharded_index finding: a shard name no file can have (longer than NAME_MAX) made
// std::filesystem throw its own exception out of open_checkpoint. Control characters in names
// are escaped in the error.
TEST(BadSharded, ImpossibleAndControlCharacterShardNamesGiveOneLineErrors) {
  TempDir dir;
  const nlohmann::json too_long = {{"weight_map", {{"w", std::string(300, 'a') + ".safetensors"}}}};
  write_raw(dir / kShardIndexName, too_long.dump());
  expect_error([&] { open_checkpoint(dir / kShardIndexName); }, {kShardIndexName, "File name too long"});
  const nlohmann::json control = {{"weight_map", {{"w\nv", "b\tc.safetensors"}}}};
  write_raw(dir / kShardIndexName, control.dump());
  expect_error([&] { open_checkpoint(dir / kShardIndexName); },
               {kShardIndexName, "shard 'b\\tc.safetensors' is missing", "tensor 'w\\nv'"});
}

TEST(BadRequests, ManifestAndRangeErrors) {
  TempDir dir;
  expect_error([&] { open_checkpoint(dir / "absent.h5"); }, {"absent.h5", "no such file"});
  const std::vector<TensorInfo> dup = {{"a", DType::f32, {1}}, {"a", DType::f32, {2}}};
  expect_error([&] { create_checkpoint(dir / "d.h5", {}, dup); }, {"duplicate tensor name 'a'"});
  expect_error([&] { create_checkpoint(dir / "x.pt", {}, {}); }, {"x.pt", "unknown checkpoint extension"});
  auto w = create_checkpoint(dir / "w.safetensors", {}, {{"a", DType::f32, {2}}});
  std::vector<std::byte> nine(9);
  expect_error([&] { w->write("a", 0, nine); }, {"w.safetensors", "'a'", "outside"});
  expect_error([&] { w->write("b", 0, nine); }, {"'b'", "not in the manifest"});
}

TEST(AtomicFile, KilledWriterLeavesNoCompleteLookingFile) {
  TempDir dir;
  const fs::path out = dir / "ck.safetensors";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: start a checkpoint, write half of it, die without cleanup (like kill -9).
    auto w = create_checkpoint(out, {}, {{"a", DType::f32, {1024}}});
    std::vector<std::byte> half(2048);
    w->write("a", 0, half);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_FALSE(fs::exists(out));
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_NE(e.path().filename().string().find(".tmp-"), std::string::npos) << "only a temporary may remain";
}

TEST(AtomicFile, WriteFileAtomicReplaces) {
  TempDir dir;
  write_file_atomic(dir / "x.json", "first");
  write_file_atomic(dir / "x.json", "second");
  EXPECT_EQ(read_raw(dir / "x.json"), "second");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), {}), 1);
  {
    AtomicFile f(dir / "y");
    write_raw(f.temp_path(), "never committed");
    EXPECT_NE(f.temp_path().filename().string().find("y.tmp-"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir / "y"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), {}), 1);
}

}  // namespace
}  // namespace wsm
