// Untrusted HDF5 input (issue 12, item 5): libhdf5 runs in a helper process (protocol/formats/child_worker.h),
// so a file that crashes or hangs it ends in a one-line wsm::Error naming the file, never in a crash
// or hang of wsm. Files are built here with h5py (an independent writer) or by corrupting ours.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "wsm/formats/checkpoint.h"
#include "protocol/formats/child_worker.h"
#include "wsm/core/error.h"
#include "wsm/formats/free_space.h"
#include "wsm/formats/hdf5_checkpoint.h"
#include "tests/proc_stat.h"
#include "tests/protocol/test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::TempDir;

// The message of the wsm::Error `f` throws; fails the test when it throws none or a multi-line one.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }
  ADD_FAILURE() << "no wsm::Error thrown";
  return "";
}

bool h5py_ready() {
  return std::system((std::string(WSM_PYTHON) + " -c 'import h5py' >/dev/null 2>&1").c_str()) == 0;
}

int python(const std::string& code) {
  return std::system((std::string(WSM_PYTHON) + " -c \"" + code + "\"").c_str());
}

#define REQUIRE_H5PY() \
  if (!h5py_ready()) GTEST_SKIP() << WSM_PYTHON << " cannot import h5py (tools/install-deps.sh installs it)"

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Opens `path` and reads every tensor through read(): what a conversion does.
void read_everything(const fs::path& path) {
  auto r = open_checkpoint(path);
  for (const auto& t : r->tensors()) {
    std::vector<std::byte> buf(std::min<std::uint64_t>(t.nbytes(), 1 << 20));
    r->read(t.name, 0, buf);
  }
}

// This process's children, zombies included (every /proc/<pid>/stat whose parent is us).
std::vector<pid_t> child_processes() {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = test::proc_stat(static_cast<pid_t>(std::stol(name)));  // "" once gone
    const auto close = stat.rfind(')');  // "pid (comm) state ppid ..."; comm may hold spaces
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    long ppid = 0;
    if (rest >> state >> ppid && ppid == ::getpid()) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

std::size_t open_descriptors() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// The helper's pid, as it answers "pid".
std::string pid_of(ChildWorker& w) { return w.call("pid.h5", "pid", 10s, 100); }

TEST(ChildWorker, AnswersAndPassesErrorsThrough) {
  ChildWorker w([](std::string_view req) -> std::string {
    if (req == "fail") throw Error("subject.h5: refused");
    return std::string(req) + "!" + std::to_string(::getpid());
  });
  EXPECT_EQ(w.starts(), 0u);  // nothing forked before the first call
  const std::string a = w.call("subject.h5", "hi", 10s, 100);
  EXPECT_EQ(a.substr(0, 3), "hi!");
  EXPECT_NE(a.substr(3), std::to_string(::getpid()));  // answered by another process
  EXPECT_EQ(error_of([&] { w.call("subject.h5", "fail", 10s, 100); }), "subject.h5: refused");
  const std::string again = w.call("subject.h5", "again", 10s, 100);
  EXPECT_EQ(again.substr(0, 6), "again!");
  EXPECT_EQ(again.substr(6), a.substr(3));  // the same helper, still usable
  EXPECT_EQ(w.starts(), 1u);
}

// One helper serves call after call, and keeps its own state between them.
TEST(ChildWorker, OneHelperServesManyCalls) {
  ChildWorker w([n = 0](std::string_view) mutable { return std::to_string(++n) + " " + std::to_string(::getpid()); });
  const std::string first = w.call("a.h5", "x", 10s, 100);
  for (int i = 2; i <= 200; ++i) {
    const std::string got = w.call("a.h5", "x", 10s, 100);
    ASSERT_EQ(got.substr(0, got.find(' ')), std::to_string(i)) << "call " << i;  // its count went on
    ASSERT_EQ(got.substr(got.find(' ')), first.substr(first.find(' '))) << "call " << i;  // same pid
  }
  EXPECT_EQ(w.starts(), 1u);
  EXPECT_EQ(child_processes().size(), 1u);
}

// A crash ends that call in an error naming its subject; the dead helper is reaped and the next
// call (another file) is answered by a fresh one.
TEST(ChildWorker, CrashBecomesErrorNamingTheSubjectThenAFreshHelperAnswers) {
  ChildWorker w([](std::string_view req) -> std::string {
    if (req == "die") ::kill(::getpid(), SIGKILL);
    return std::to_string(::getpid());
  });
  const std::string before = pid_of(w);
  const std::string msg = error_of([&] { w.call("bad.h5", "die", 10s, 100); });
  EXPECT_EQ(msg.rfind("bad.h5: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("crashed (signal 9"), std::string::npos) << msg;
  EXPECT_EQ(child_processes().size(), 0u);  // reaped, no zombie
  const std::string after = w.call("good.h5", "hi", 10s, 100);
  EXPECT_NE(after, before);
  EXPECT_EQ(w.starts(), 2u);
}

TEST(ChildWorker, HangIsKilledAtTheTimeLimit) {
  ChildWorker w([](std::string_view req) -> std::string {
    if (req == "hang") std::this_thread::sleep_for(60s);
    return "ok";
  });
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { w.call("slow.h5", "hang", 300ms, 100); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(msg.rfind("slow.h5: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("did not answer within 300 ms"), std::string::npos) << msg;
  EXPECT_EQ(child_processes().size(), 0u);
  EXPECT_EQ(w.call("next.h5", "x", 10s, 100), "ok");
}

TEST(ChildWorker, OversizedReplyIsRefused) {
  ChildWorker w([](std::string_view) { return std::string(1000, 'x'); });
  EXPECT_NE(error_of([&] { w.call("big.h5", "x", 10s, 999); }).find("big.h5: the helper process reading it sent a malformed reply"),
            std::string::npos);
}

// Another exception than wsm::Error in the helper still ends in an error naming the subject.
TEST(ChildWorker, OtherExceptionNamesTheSubject) {
  ChildWorker w([](std::string_view) -> std::string { throw std::runtime_error("boom"); });
  EXPECT_EQ(error_of([&] { w.call("odd.h5", "x", 10s, 100); }), "odd.h5: internal error in the helper process: boom");
}

// The helper's messages are untrusted text (a hostile file may steer it): they arrive as one line.
TEST(ChildWorker, HelperMessagesArriveAsOneLine) {
  ChildWorker w([](std::string_view req) -> std::string {
    if (req == "error") throw Error("x.h5: dataset /bad\nname");
    throw std::runtime_error("two\nlines");
  });
  EXPECT_EQ(error_of([&] { w.call("x.h5", "error", 10s, 100); }), "x.h5: dataset /bad\\nname");
  EXPECT_EQ(error_of([&] { w.call("x.h5", "other", 10s, 100); }), "x.h5: internal error in the helper process: two\\nlines");
}

// The helper holds no copies of the parent's descriptors (a long-lived helper would otherwise keep
// the parent's sockets and files open), and nothing of it outlives the ChildWorker.
TEST(ChildWorker, HoldsNoParentDescriptorsAndLeavesNothingBehind) {
  const std::size_t fds_before = open_descriptors();
  std::array<int, 2> pipe_fds{};
  ASSERT_EQ(::pipe(pipe_fds.data()), 0);
  for (int& fd : pipe_fds) {  // away from 3, where the helper keeps its own socket
    const int high = ::fcntl(fd, F_DUPFD, 50);
    ASSERT_GE(high, 50);
    ::close(fd);
    fd = high;
  }
  {
    ChildWorker w([](std::string_view req) -> std::string {
      return ::fcntl(std::stoi(std::string(req)), F_GETFD) < 0 ? "closed" : "open";
    });
    EXPECT_EQ(w.call("fds.h5", std::to_string(pipe_fds[0]), 10s, 100), "closed");
    EXPECT_EQ(w.call("fds.h5", std::to_string(pipe_fds[1]), 10s, 100), "closed");
    EXPECT_EQ(child_processes().size(), 1u);
  }
  EXPECT_EQ(child_processes().size(), 0u);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  EXPECT_EQ(open_descriptors(), fds_before);
}

// Corrupted copies of a file we wrote (contiguous, chunked and compressed datasets), one bit flipped
// every 53 bytes of the metadata region in turn: every one either reads or fails with an error
// naming it. Some of these make libhdf5 loop: the helper's time limit is lowered to keep this short.
TEST(UntrustedHdf5, CorruptedFilesNeverCrash) {
  set_hdf5_helper_timeout(1s);
  TempDir dir;
  Checkpoint c = test::sample_checkpoint(5);
  save_checkpoint(dir / "plain.h5", c);
  save_checkpoint(dir / "packed.h5", c, {.compression = 3, .chunk_bytes = 64});
  int errors = 0, cases = 0;
  for (const char* name : {"plain.h5", "packed.h5"}) {
    std::ifstream in(dir / name, std::ios::binary);
    const std::string good(std::istreambuf_iterator<char>(in), {});
    for (std::size_t at = 0; at < std::min<std::size_t>(good.size(), 4096); at += 53) {
      std::string bad = good;
      bad[at] = static_cast<char>(bad[at] ^ (1 << (at % 8)));  // one bit flipped
      std::ofstream(dir / "bad.h5", std::ios::binary).write(bad.data(), std::streamsize(bad.size()));
      ++cases;
      try {
        read_everything(dir / "bad.h5");
      } catch (const Error& e) {
        ++errors;
        EXPECT_NE(std::string(e.what()).find("bad.h5"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_GT(errors, 0) << "of " << cases;  // the corruption was noticed somewhere
}

// Files that crashed libhdf5 1.10.8 in wsm's process (found by mutating an h5py file).
TEST(UntrustedHdf5, FilesThatCrashLibhdf5GiveAnError) {
  const fs::path dir = fs::path(WSM_SOURCE_DIR) / "tests/protocol/fuzz_seeds/hdf5";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("crash-", 0) != 0) continue;
    ++n;
    const std::string msg = error_of([&] { read_everything(e.path()); });
    EXPECT_NE(msg.find(e.path().filename().string()), std::string::npos) << msg;
  }
  EXPECT_GT(n, 0);
}

// Reads every tensor in full and compares it with what was written.
void expect_reads_back(CheckpointReader& r, const Checkpoint& c) {
  ASSERT_EQ(r.tensors().size(), c.tensors.size()) << r.path();
  for (const auto& t : c.tensors) {
    std::vector<std::byte> got(t.data.size());
    r.read(t.info.name, 0, got);
    EXPECT_TRUE(got == t.data) << r.path() << ": " << t.info.name;
  }
}

// One helper for many files: a file that kills it mid-sequence ends in an error naming that file,
// and every reader (one opened before, whose file the dead helper held, and ones opened after)
// still reads its own bytes; when the readers and the lease are gone, no process or descriptor is left.
TEST(UntrustedHdf5, HelperDeathMidSequenceThenGoodFilesRead) {
  set_hdf5_helper_timeout(10s);
  TempDir dir;
  const std::size_t fds_before = open_descriptors();
  const Checkpoint a = test::sample_checkpoint(21), b = test::sample_checkpoint(22);
  // Compressed: every tensor is read through the helper, none from the mapping.
  save_checkpoint(dir / "a.h5", a, {.compression = 1, .chunk_bytes = 64});
  save_checkpoint(dir / "b.h5", b, {.compression = 1, .chunk_bytes = 64});
  const fs::path seeds = fs::path(WSM_SOURCE_DIR) / "tests/protocol/fuzz_seeds/hdf5";
  {
    const Hdf5HelperLease lease = hold_hdf5_helper();
    const auto ra = open_checkpoint(dir / "a.h5");
    expect_reads_back(*ra, a);
    EXPECT_EQ(child_processes().size(), 1u);
    for (const char* bad : {"crash-400.h5", "crash-1133.h5", "crash-2064.h5"}) {
      const std::string msg = error_of([&] { read_everything(seeds / bad); });
      EXPECT_NE(msg.find(bad), std::string::npos) << msg;
      const auto rb = open_checkpoint(dir / "b.h5");  // a fresh helper when that one died
      expect_reads_back(*rb, b);
      expect_reads_back(*ra, a);  // reopened there as it needs it
      EXPECT_EQ(child_processes().size(), 1u);
    }
    // The same, with a death the test makes sure of: the helper killed from outside while idle.
    ASSERT_EQ(child_processes().size(), 1u);
    const pid_t killed = child_processes().front();
    ::kill(killed, SIGKILL);
    const auto dead = [&] {  // a zombie: dead, not reaped yet
      const std::string stat = test::proc_stat(killed);
      return stat.size() > stat.rfind(')') + 2 && stat[stat.rfind(')') + 2] == 'Z';
    };
    for (int i = 0; i < 500 && !dead(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(dead());
    expect_reads_back(*ra, a);
    ASSERT_EQ(child_processes().size(), 1u);
    EXPECT_NE(child_processes().front(), killed);
  }
  EXPECT_EQ(child_processes().size(), 0u);
  EXPECT_EQ(open_descriptors(), fds_before);
}

// Files opened one after another while a lease is held share one helper; without one (and without
// a reader needing it), no helper process runs.
TEST(UntrustedHdf5, LeaseKeepsOneHelperForManyFiles) {
  TempDir dir;
  const Checkpoint c = test::sample_checkpoint(23);
  save_checkpoint(dir / "c.h5", c, {.compression = 1});
  save_checkpoint(dir / "plain.h5", c);
  {
    const auto r = open_checkpoint(dir / "plain.h5");  // every byte mapped: the helper is let go
    expect_reads_back(*r, c);
    EXPECT_EQ(child_processes().size(), 0u);
  }
  std::vector<pid_t> seen;
  {
    const Hdf5HelperLease lease = hold_hdf5_helper();
    for (int i = 0; i < 20; ++i) {
      const auto r = open_checkpoint(dir / (i % 2 ? "c.h5" : "plain.h5"));
      expect_reads_back(*r, c);
      const auto kids = child_processes();
      ASSERT_EQ(kids.size(), 1u);
      seen.push_back(kids.front());
    }
  }
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [&](pid_t p) { return p == seen.front(); }));
  EXPECT_EQ(child_processes().size(), 0u);
}

TEST(UntrustedHdf5, TruncatedH5pyFile) {
  REQUIRE_H5PY();
  TempDir dir;
  ASSERT_EQ(python("import h5py, numpy as np; f = h5py.File('" + (dir / "t.h5").string() +
                   "', 'w'); f['a'] = np.arange(4096, dtype='f4'); f['b/c'] = np.ones((64, 64), 'f8')"),
            0);
  const auto size = fs::file_size(dir / "t.h5");
  for (auto cut : {size / 8, size / 2, size - 100}) {
    fs::copy_file(dir / "t.h5", dir / "cut.h5", fs::copy_options::overwrite_existing);
    fs::resize_file(dir / "cut.h5", cut);
    EXPECT_NE(error_of([&] { read_everything(dir / "cut.h5"); }).find("cut.h5"), std::string::npos);
  }
}

TEST(UntrustedHdf5, ExternalStorageAndVirtualDatasetsRefused) {
  REQUIRE_H5PY();
  TempDir dir;
  std::ofstream(dir / "secret.bin", std::ios::binary) << std::string(16, 'S');
  ASSERT_EQ(python("import h5py, numpy as np; f = h5py.File('" + (dir / "ext.h5").string() +
                   "', 'w'); f.create_dataset('pulled', shape=(4,), dtype='f4', external=[('" +
                   (dir / "secret.bin").string() + "', 0, 16)])"),
            0);
  std::string msg = error_of([&] { read_everything(dir / "ext.h5"); });
  EXPECT_NE(msg.find("ext.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pulled"), std::string::npos) << msg;
  EXPECT_NE(msg.find("external"), std::string::npos) << msg;

  ASSERT_EQ(python("import h5py, numpy as np; s = h5py.File('" + (dir / "src.h5").string() +
                   "', 'w'); s['d'] = np.ones(4, 'f4'); s.close(); f = h5py.File('" + (dir / "vds.h5").string() +
                   "', 'w'); l = h5py.VirtualLayout(shape=(4,), dtype='f4'); l[:] = h5py.VirtualSource('" +
                   (dir / "src.h5").string() + "', 'd', shape=(4,)); f.create_virtual_dataset('v', l)"),
            0);
  msg = error_of([&] { read_everything(dir / "vds.h5"); });
  EXPECT_NE(msg.find("vds.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("virtual"), std::string::npos) << msg;
}

TEST(UntrustedHdf5, WsmFileWithoutTensorsGroupRefused) {
  REQUIRE_H5PY();
  TempDir dir;
  ASSERT_EQ(python("import h5py, numpy as np; f = h5py.File('" + (dir / "nt.h5").string() +
                   "', 'w'); f.attrs['wsm.format_version'] = np.int32(1); f.attrs['wsm.step'] = 7"),
            0);
  const std::string msg = error_of([&] { open_checkpoint(dir / "nt.h5"); });
  EXPECT_NE(msg.find("nt.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("/tensors"), std::string::npos) << msg;
  const auto r = test::run_wsm("convert " + q(dir / "nt.h5") + " " + q(dir / "out.safetensors"));
  EXPECT_EQ(r.rc, 1) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out.safetensors"));
}

TEST(FreeSpace, RefusesWhatDoesNotFit) {
  EXPECT_NO_THROW(require_free_space("out.h5", 100, 100));
  const std::string msg = error_of([] { require_free_space("dir/out.h5", 101, 100); });
  EXPECT_NE(msg.find("dir/out.h5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("needs 101 bytes"), std::string::npos) << msg;
  EXPECT_EQ(payload_bytes({{"a", DType::f32, {3}}, {"b", DType::f64, {2, 5}}}), 12u + 80u);
  EXPECT_EQ(payload_bytes({{"a", DType::f64, {1LL << 60}}, {"b", DType::f64, {1LL << 60}}}), UINT64_MAX);
  EXPECT_GT(free_bytes(fs::temp_directory_path()), 0u);
}

// A small file declaring an unallocated 2^50-byte dataset: convert refuses before writing anything.
TEST(FreeSpace, HugeSparseDatasetRefusedBeforeWriting) {
  REQUIRE_H5PY();
  TempDir dir;
  ASSERT_EQ(python("import h5py; f = h5py.File('" + (dir / "huge.h5").string() +
                   "', 'w'); f.create_dataset('huge', shape=(2**47,), dtype='f8')"),
            0);
  ASSERT_LT(fs::file_size(dir / "huge.h5"), 64u << 10);
  for (const char* out : {"out.safetensors", "out.h5"}) {
    const auto r = test::run_wsm("convert " + q(dir / "huge.h5") + " " + q(dir / out));
    EXPECT_EQ(r.rc, 1) << r.err;
    EXPECT_NE(r.err.find("needs 1125899906842624 bytes"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find((dir / out).string() + ": needs"), std::string::npos) << r.err;
  }
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);  // only the input: no output, no temporary
}

// A write that fails for lack of space (here RLIMIT_FSIZE, write() then fails with EFBIG) ends in a
// one-line error and exit 1, leaves no temporary, and the process exits cleanly (no HDF5 id left
// open to crash libhdf5's shutdown).
TEST(FullDisk, FailedHdf5WriteLeavesNothingAndExitsCleanly) {
  TempDir dir;
  Checkpoint c;
  c.tensors.push_back(test::random_tensor("w", DType::f32, {256, 1024}, 1));  // 1 MiB
  c.tensors.push_back(test::random_tensor("v", DType::f32, {256, 1024}, 2));
  save_checkpoint(dir / "in.safetensors", c);
  save_checkpoint(dir / "in2.safetensors", c);
  const std::string limit = "trap '' XFSZ; ulimit -f 512; ";  // 256 KiB per file
  for (const std::string& args : {"convert " + q(dir / "in.safetensors") + " " + q(dir / "out.h5"),
                                 "merge --out " + q(dir / "m.h5") + " " + q(dir / "in.safetensors") + " " +
                                     q(dir / "in2.safetensors")}) {
    const auto r = test::run_command(limit + "exec '" + test::wsm_binary().string() + "' " + args);
    EXPECT_EQ(r.rc, 1) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(dir.path().string()), std::string::npos) << r.err;
    int files = 0;
    for (const auto& e : fs::directory_iterator(dir.path())) files += e.path().extension() != ".safetensors";
    EXPECT_EQ(files, 0) << args;
  }
}

}  // namespace
}  // namespace wsm
