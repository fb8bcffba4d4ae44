// Issue 23 items 2 and 3, as an attacker would try them, against a `wsm serve --memory-budget 64M`
// process: the daemon's peak memory (VmHWM) stays under the budget plus its documented overhead
// (docs/hardening.md, "Ingest bounds"), and it serves another peer afterwards. Before: replies to a
// peer that never reads queued without bound (here 10,000 status and 10,000 outputs requests
// against a window of 1000 checkpoints), and two version-2 Hellos of a million one-element tensors
// were parsed and kept (the issue measured 560 MiB and 1.39 GB).
#include <csignal>
#include <fstream>
#include <thread>

#include <sys/wait.h>

#include <gtest/gtest.h>

#include "serve_test_util.h"
#include "wsm/client/client.h"
#include "sharded_test_util.h"

namespace wsm::merger {
namespace {

constexpr std::uint64_t kMiB = 1 << 20;
constexpr std::uint64_t kBudget = 64 * kMiB;
// What the daemon takes beside its budget (docs/hardening.md): code, libraries, ZeroMQ's buffers,
// and one envelope being parsed (at most a 32nd of the budget as a frame).
constexpr std::uint64_t kOverhead = 64 * kMiB;

// Under AddressSanitizer the daemon's peak memory is mostly the sanitizer's shadow and quarantine,
// so the peak is checked in the plain build only; the sanitized build still runs the attack and
// checks the refusals and that another peer is served.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kPeakIsMeaningful = false;
#else
constexpr bool kPeakIsMeaningful = true;
#endif

void expect_peak_within_budget(std::uint64_t peak) {
  if (!kPeakIsMeaningful) {
    std::printf("peak not checked: this is a sanitized build (the Release build checks it)\n");
    return;
  }
  EXPECT_LT(peak, kBudget + kOverhead);
}

class ServeProcess {
 public:
  ServeProcess() : dir_(test::temp_dir("memory-probes")), endpoint_(test::free_loopback_endpoint()) {
    pid_ = test::spawn_wsm_serve(dir_, endpoint_, {"--out", (dir_ / "out").string(), "--emulate", "linear@100000",
                                                   "--every", "1000000", "--memory-budget", "64M"});
    if (!test::wait_for([&] {
          try {
            test::status_of(endpoint_);
            return true;
          } catch (const std::exception&) {
            return false;
          }
        }, 30000))
      throw Error("wsm serve did not answer; see " + (dir_ / "serve.log").string());
  }
  ~ServeProcess() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  const std::string& endpoint() const { return endpoint_; }
  // A field of /proc/PID/status (VmHWM, VmRSS), in bytes.
  std::uint64_t memory(const std::string& field) const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1)) * 1024;
    throw Error("no " + field + " in /proc/" + std::to_string(pid_) + "/status");
  }
  // Waits until the resident set has not changed for 1.5 s (at most 60 s).
  void wait_steady() const {
    std::uint64_t last = 0;
    for (int same = 0, i = 0; same < 3 && i < 120; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      const auto now = memory("VmRSS");
      same = now == last ? same + 1 : 0;
      last = now;
    }
  }
  // Waits until the daemon has handled everything sent before: a status round trip that is not
  // slower than `quiet` tells the loop is idle again.
  void settle() const {
    for (int i = 0; i < 200; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      test::status_of(endpoint_);
      if (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(20)) return;
    }
  }

 private:
  std::filesystem::path dir_;
  std::string endpoint_;
  pid_t pid_ = -1;
};

TEST(ServeMemoryProbes, RepliesToAPeerThatNeverReadsAreBounded) {
  ServeProcess serve;
  // A window of 1000 checkpoints first, so that each StatusReply lists them (about 60 KB, as a
  // long run's window does).
  {
    ClientOptions co;
    co.endpoint = serve.endpoint();
    co.run_id = "probe";
    MergerClient client(co);
    for (std::int64_t step = 100; step <= 100000; step += 100) {
      auto model = test::make_model(step, {{4, 4}});
      client.send_checkpoint(step, step * 10, 1e-3, test::views(model));
    }
    client.flush();
  }
  ASSERT_EQ(test::status_of(serve.endpoint()).window_size(), 1000);
  const auto before = serve.memory("VmRSS");
  {
    test::RawPeer flood(serve.endpoint());
    for (int i = 0; i < 10000; ++i) {
      auto out = wire::envelope();
      out.mutable_outputs_request()->set_timeout_ms(0);
      flood.send(out);
      auto st = wire::envelope();
      st.mutable_status_request();
      flood.send(st);
    }
    // The daemon serves sockets in turn, so another peer's quick answer does not mean the flood
    // is read: wait until the daemon's memory stops changing, the flooding socket still open.
    serve.wait_steady();
    EXPECT_NO_THROW(test::status_of(serve.endpoint()));  // another peer is served
  }
  const auto peak = serve.memory("VmHWM");
  std::printf("20,000 unread replies: RSS %.1f MiB before, peak %.1f MiB (budget 64 MiB)\n", before / double(kMiB),
              peak / double(kMiB));
  expect_peak_within_budget(peak);
}

TEST(ServeMemoryProbes, HellosOfAMillionTinyTensorsAreRefusedWithinTheBudget) {
  ServeProcess serve;
  std::vector<test::Block> tiny;
  for (int i = 0; i < 1000000; ++i) tiny.push_back({std::to_string(i), {1}, {0}, {1}});
  const auto hello = test::group_hello("million", 0, 2, 2, tiny);
  tiny.resize(static_cast<std::size_t>(kMaxHelloTensors) + 1);  // fits the envelope limit; over the entries cap
  const auto capped = test::group_hello("capped", 0, 2, 2, tiny);
  for (const auto* env : {&hello, &hello, &capped}) {
    test::RawPeer rank(serve.endpoint());
    rank.send(*env);
    const auto reply = rank.next(30000);
    ASSERT_TRUE(reply);
    ASSERT_TRUE(reply->has_error());
    EXPECT_TRUE(reply->error().code() == v1::MALFORMED || reply->error().code() == v1::BAD_REQUEST) << reply->error().message();
    EXPECT_NE(reply->error().message().find("limit of"), std::string::npos) << reply->error().message();
  }
  serve.settle();
  const auto peak = serve.memory("VmHWM");
  std::printf("million-tensor hellos: peak %.1f MiB (budget 64 MiB)\n", peak / double(kMiB));
  expect_peak_within_budget(peak);
}

}  // namespace
}  // namespace wsm::merger
