// Issue 23: `wsm serve` reads spilled checkpoints from its --store files in place (mapped). A store
// file truncated by another process while an emission read it killed the daemon with SIGBUS. Now
// the daemon guards mapped reads: the emission (or running sum) fails naming the file, nothing is
// published, and the daemon serves on.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>

#include "merger/daemon/emission_runner.h"
#include "merger/daemon/emulation.h"
#include "merger/daemon/server.h"
#include "merger/daemon/stored_checkpoint.h"
#include "tests/protocol/test_util.h"
#include "wsm/core/error.h"
#include "wsm/formats/checkpoint.h"
#include "wsm/formats/mapped_file.h"
#include "wsm/kernels/merge.h"

namespace wsm::merger {
namespace {
namespace fs = std::filesystem;

constexpr std::int64_t kElements = 1 << 20;  // 4 MiB of f32 per checkpoint: many chunks

// A store file as the daemon writes it (persist: HDF5, contiguous), loaded back as the window does.
Entry stored_at(const fs::path& dir, std::int64_t step) {
  StoredCheckpoint c;
  c.run_id = "run";
  c.step = step;
  c.tokens = step * 1000;
  c.tensors = {{"w", DType::f32, {kElements}}};
  std::vector<std::byte> bytes(kElements * sizeof(float));
  for (std::int64_t i = 0; i < kElements; ++i) {
    const float v = float(step) + float(i % 1000) * 1e-3f;
    std::memcpy(bytes.data() + 4 * i, &v, 4);
  }
  c.data.push_back(tensor_bytes(std::move(bytes)));
  const fs::path path = dir / ("run-step_" + std::to_string(step) + ".h5");
  persist(c, path);
  return load_stored(path);
}

// One output over the stored steps 100 and 200 with `weights`, written to `path`.
EmissionJob linear_job(const Entry& a, const Entry& b, std::vector<double> weights, const fs::path& path) {
  EmissionJob job;
  job.run_id = "run";
  job.step = 200;
  job.inputs = {a, b};
  EmissionOutput out;
  out.emulation = parse_emulations("linear@200").at(0);
  out.weights = std::move(weights);
  out.source_steps = {100, 200};
  out.path = path;
  job.outputs = {out};
  return job;
}

// The CPU backend, with `change` applied to a file at its first call: mid-emission.
class ChangingBackend final : public kernels::MergeBackend {
 public:
  ChangingBackend(fs::path file, std::function<void(const fs::path&)> change)
      : cpu_(kernels::make_cpu_backend()), file_(std::move(file)), change_(std::move(change)) {}
  std::string name() const override { return "cpu"; }
  void merge(const kernels::MergeProblem& problem) override {
    if (!changed_.exchange(true)) change_(file_);
    cpu_->merge(problem);
  }

 private:
  std::unique_ptr<kernels::MergeBackend> cpu_;
  fs::path file_;
  std::function<void(const fs::path&)> change_;
  std::atomic<bool> changed_{false};
};

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  return names;
}

// Runs a linear emission over two stored checkpoints, the older truncated at the first merge call,
// in a child process (SIGBUS before the fix killed it); returns the error, or "died: signal N".
std::string emission_with_truncated_input(const fs::path& dir) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::string error;
    try {
      guard_mapped_reads();  // as Server does
      const Entry a = stored_at(dir, 100), b = stored_at(dir, 200);
      const EmissionJob job = linear_job(a, b, {0.5, 0.5}, dir / "out" / "run" / "linear" / "step_200.h5");
      RunnerOptions options;
      options.chunk_elements = 4096;
      ChangingBackend backend(a->file, [](const fs::path& p) { fs::resize_file(p, 4096); });
      run_emission(job, backend, options);
    } catch (const Error& e) {
      error = e.what();
    }
    std::ofstream(dir / "error.txt") << error;
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) return "died: signal " + std::to_string(WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  std::ifstream in(dir / "error.txt");
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(ServeTruncatedStore, AStoreFileTruncatedUnderAnEmissionFailsItNotTheDaemon) {
  test::TempDir dir;
  const std::string error = emission_with_truncated_input(dir.path());
  EXPECT_NE(error.find("run-step_100.h5"), std::string::npos) << error;
  EXPECT_NE(error.find("truncated"), std::string::npos) << error;
  EXPECT_TRUE(listing(dir / "out").empty()) << "published or left behind: " << listing(dir / "out").front();
}

TEST(ServeTruncatedStore, UnchangedStoreFilesMergeAsBefore) {
  // The check names only files that changed: the same emission, untouched, writes its output.
  test::TempDir dir;
  const Entry a = stored_at(dir.path(), 100), b = stored_at(dir.path(), 200);
  const EmissionJob job = linear_job(a, b, {0.25, 0.75}, dir / "out" / "step_200.h5");
  ChangingBackend backend(a->file, [](const fs::path&) {});
  ASSERT_EQ(run_emission(job, backend).size(), 1u);
  const Checkpoint merged = load_checkpoint(job.outputs[0].path);
  ASSERT_EQ(merged.tensors.size(), 1u);
  for (std::int64_t i : {std::int64_t{0}, std::int64_t{999}, kElements - 1}) {
    float got = 0;
    std::memcpy(&got, merged.tensors[0].data.data() + 4 * i, 4);
    const double base = double(float(i % 1000) * 1e-3f);
    const double want = 0.25 * (double(float(100 + base))) + 0.75 * double(float(200 + base));
    EXPECT_NEAR(got, want, 1e-4) << i;
  }
}

TEST(ServeTruncatedStore, TheDaemonInstallsTheGuard) {
  // In a child: the handler stays installed for the process's life.
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Before: the default action (death), or a sanitizer's handler that reports and dies.
    struct sigaction before {};
    ::sigaction(SIGBUS, nullptr, &before);
    test::TempDir dir;
    ServerOptions o;
    o.listen = "tcp://127.0.0.1:*";
    o.core.out_dir = dir / "out";
    Server server(o);
    struct sigaction after {};
    ::sigaction(SIGBUS, nullptr, &after);
    const bool replaced = (after.sa_flags & SA_SIGINFO) && after.sa_sigaction != before.sa_sigaction;
    ::_exit(replaced ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "wsm serve's Server left SIGBUS to the handler it found (death)";
}

}  // namespace
}  // namespace wsm::merger
