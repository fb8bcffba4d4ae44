// Issue 23, item 12: `wsm merge` reads its inputs in place (mapped). An input truncated while being
// merged used to kill the process with SIGBUS, leaving OUT.tmp-<pid>-0 behind; an input rewritten
// in place was mixed into the output silently. Now the merge ends in an error naming the file, no
// temporary is left, the next merge sweeps what a killed one left, and an input changed in place
// (size or modification time) fails the merge before any output is published.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>

#include "tests/protocol/test_util.h"
#include "wsm/core/error.h"
#include "wsm/merger/offline_merge.h"

namespace wsm::merger {
namespace {
namespace fs = std::filesystem;

constexpr std::int64_t kElements = 1 << 20;  // 4 MiB of f32 per input

fs::path write_input(const fs::path& dir, std::int64_t step) {
  Checkpoint c;
  c.meta.step = step;
  Tensor t;
  t.info = {"w", DType::f32, {kElements}};
  t.data.resize(t.info.nbytes());
  for (std::int64_t i = 0; i < kElements; ++i) {
    const float v = float(step) + float(i % 1000) * 1e-3f;
    std::memcpy(t.data.data() + 4 * i, &v, 4);
  }
  c.tensors.push_back(std::move(t));
  const fs::path p = dir / ("step_" + std::to_string(step) + ".safetensors");
  save_checkpoint(p, c);
  return p;
}

OfflineMergeRequest request(const fs::path& dir, const std::vector<fs::path>& inputs) {
  OfflineMergeRequest req;
  req.inputs = inputs;
  req.specs = {parse_merge_spec("linear")};
  req.outputs = {dir / "out" / "merged.safetensors"};
  req.chunk_elements = 4096;  // many chunks: the input changes while most are still to read
  return req;
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename().string());
  return names;
}

// Runs the merge with `change` applied to the oldest input at the first chunk written; returns
// the error (empty: the merge succeeded).
std::string merge_while(const fs::path& dir, const std::function<void(const fs::path&)>& change) {
  const auto a = write_input(dir, 100), b = write_input(dir, 200);
  std::atomic<bool> done{false};
  try {
    run_offline_merge(request(dir, {a, b}), [&](std::uint64_t, std::uint64_t) {
      if (!done.exchange(true)) change(a);
    });
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(MergeChangedInput, TruncatedWhileMappedIsAnErrorNotSigbus) {
  test::TempDir dir;
  std::string error;
  // In a child: before the fix the SIGBUS killed the whole test binary.
  const pid_t pid = ::fork();
  if (pid == 0) {
    error = merge_while(dir.path(), [](const fs::path& p) { fs::resize_file(p, 4096); });
    std::ofstream(dir / "error.txt") << error;
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "the merge died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  std::ifstream in(dir / "error.txt");
  error.assign(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(error.find("step_100.safetensors"), std::string::npos) << error;
  EXPECT_NE(error.find("truncated"), std::string::npos) << error;
  EXPECT_TRUE(listing(dir / "out").empty()) << "left behind: " << listing(dir / "out").front();
}

TEST(MergeChangedInput, RewrittenInPlaceIsDetected) {
  test::TempDir dir;
  const std::string error = merge_while(dir.path(), [](const fs::path& p) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-4096, std::ios::end);
    f.write(std::string(4096, '\x7f').data(), 4096);
    f.close();
    fs::last_write_time(p, fs::last_write_time(p) + std::chrono::seconds(2));  // coarse clocks too
  });
  EXPECT_NE(error.find("step_100.safetensors"), std::string::npos) << error;
  EXPECT_NE(error.find("changed while"), std::string::npos) << error;
  EXPECT_TRUE(listing(dir / "out").empty());
}

TEST(MergeChangedInput, NextMergeSweepsTemporariesOfDeadWriters) {
  test::TempDir dir;
  fs::create_directories(dir / "out");
  const pid_t dead = ::fork();  // a pid that no process holds any more
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string stale = "merged.safetensors.tmp-" + std::to_string(dead) + "-0";
  const std::string live = "merged.safetensors.tmp-" + std::to_string(::getppid()) + "-3";
  const std::string other = "unrelated.safetensors.tmp-" + std::to_string(dead) + "-0";
  for (const auto& name : {stale, live, other}) std::ofstream(dir / "out" / name) << "partial";
  EXPECT_EQ(merge_while(dir.path(), [](const fs::path&) {}), "");
  const auto names = listing(dir / "out");
  const std::set<std::string> got(names.begin(), names.end());
  EXPECT_EQ(got, (std::set<std::string>{"merged.safetensors", live, other}));
}

}  // namespace
}  // namespace wsm::merger
