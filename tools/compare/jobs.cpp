#include "tools/compare/jobs.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <thread>

#include "wsm/core/error.h"
#include "wsm/trainer/train.h"

extern char** environ;

namespace wsm::tools::compare {
namespace {

struct Fd {  // RAII for one file descriptor
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string last_line(const std::string& text) {
  std::size_t end = text.find_last_not_of("\r\n \t");
  if (end == std::string::npos) return {};
  const std::size_t start = text.find_last_of('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a full disk loses log lines, not the job
    p += w, n -= std::size_t(w);
  }
}

// A running job's stdout: the tail kept, complete lines handed on, the log written up to its cap.
// Each byte is looked at a bounded number of times, however long the lines.
class StdoutSink {
 public:
  StdoutSink(int log_fd, std::size_t index, const JobCallbacks& callbacks, std::mutex& callback_mu)
      : log_fd_(log_fd), index_(index), callbacks_(callbacks), callback_mu_(callback_mu) {}

  void take(const char* p, std::size_t n) {
    log(p, n);
    tail_.append(p, n);
    if (tail_.size() > 2 * kOutputTailBytes) tail_.erase(0, tail_.size() - kOutputTailBytes);
    if (!callbacks_.on_line) return;
    for (const char* end = p + n; p < end;) {
      const auto* nl = static_cast<const char*>(std::memchr(p, '\n', std::size_t(end - p)));
      const char* stop = nl ? nl : end;
      line_.append(p, std::min<std::size_t>(std::size_t(stop - p), kOutputTailBytes - line_.size()));
      p = nl ? nl + 1 : end;
      if (!nl) break;
      std::lock_guard lock(callback_mu_);
      callbacks_.on_line(index_, line_);
      line_.clear();
    }
  }
  std::string tail() {
    if (tail_.size() > kOutputTailBytes) tail_.erase(0, tail_.size() - kOutputTailBytes);
    return std::move(tail_);
  }

 private:
  void log(const char* p, std::size_t n) {
    if (logged_ >= kLogStdoutBytes) return;
    const std::size_t w = std::size_t(std::min<std::uint64_t>(n, kLogStdoutBytes - logged_));
    write_all(log_fd_, p, w);
    logged_ += w;
    if (logged_ == kLogStdoutBytes) {
      static constexpr char note[] = "\n[wsm: stdout beyond 64 MiB not logged]\n";
      write_all(log_fd_, note, sizeof note - 1);
    }
  }
  int log_fd_;
  std::size_t index_;
  const JobCallbacks& callbacks_;
  std::mutex& callback_mu_;
  std::string tail_, line_;
  std::uint64_t logged_ = 0;
};

enum class Ending { exited, timed_out, cancelled };
using Clock = std::chrono::steady_clock;

// Why a job must stop now, if it must.
std::optional<Ending> must_stop(const Job& job, Clock::time_point deadline) {
  if (job.control && job.control->cancelled()) return Ending::cancelled;
  if (job.timeout.count() > 0 && Clock::now() >= deadline) return Ending::timed_out;
  return std::nullopt;
}

// Reads stdout until the job closes it, then waits for the job to exit (without reaping it), both
// looking at the deadline and the cancel flag at least every 100 ms.
Ending follow(const Job& job, pid_t pid, int fd, StdoutSink& sink, Clock::time_point deadline) {
  std::vector<char> buf(64 << 10);
  for (bool open = true; open;) {
    if (auto stop = must_stop(job, deadline)) return *stop;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, 100);
    if (ready <= 0) continue;  // a timeout, or EINTR
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) open = false;
    else sink.take(buf.data(), std::size_t(n));
  }
  for (;;) {
    siginfo_t info{};
    if (::waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) return Ending::exited;
    if (auto stop = must_stop(job, deadline)) return *stop;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// stderr went to a file: its last line for messages, and the file (up to the log cap) into the log.
std::string finish_stderr(int err_fd, int log_fd) {
  char buf[64 << 10];
  std::string tail;
  std::uint64_t copied = 0;
  ::lseek(err_fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(err_fd, buf, sizeof buf)) > 0;) {
    if (copied < kLogStdoutBytes) write_all(log_fd, buf, std::size_t(std::min<std::uint64_t>(std::uint64_t(n), kLogStdoutBytes - copied)));
    copied += std::uint64_t(n);
    tail.append(buf, std::size_t(n));
    if (tail.size() > 2 * kOutputTailBytes) tail.erase(0, tail.size() - kOutputTailBytes);
  }
  return last_line(tail);
}

pid_t spawn(const Job& job, int out_fd, int err_fd, JobResult& result) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // A job that may be killed gets a session of its own, so killpg reaches its children too. Other
  // jobs (`wsm compare`'s training runs) stay in ours, where a terminal's Ctrl-C reaches them.
  if (job.timeout.count() > 0 || job.control) posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  std::vector<char*> argv;
  for (const auto& a : job.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    result.last_error = std::string("cannot start ") + job.argv[0] + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

JobResult run_one(const Job& job, std::size_t index, const JobCallbacks& callbacks, std::mutex& callback_mu) {
  JobResult result;
  if (!job.log.parent_path().empty()) std::filesystem::create_directories(job.log.parent_path());
  Fd log(::open(job.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (log.fd < 0) throw Error(job.log.string() + ": cannot open log: " + std::strerror(errno));
  const std::string err_path = job.log.string() + ".stderr";
  Fd err(::open(err_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  int pipe_fds[2];
  if (err.fd < 0 || ::pipe2(pipe_fds, O_CLOEXEC) != 0) throw Error(job.name + ": cannot create pipes");
  Fd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  const auto started = Clock::now();
  const auto deadline = started + job.timeout;
  const pid_t pid = spawn(job, write_end.fd, err.fd, result);
  if (pid < 0) return result;
  ::close(write_end.fd);
  write_end.fd = -1;

  StdoutSink sink(log.fd, index, callbacks, callback_mu);
  Ending ending = job.control && !job.control->add(pid) ? Ending::cancelled : Ending::exited;
  if (ending == Ending::exited) ending = follow(job, pid, read_end.fd, sink, deadline);
  if (ending != Ending::exited) ::killpg(pid, SIGKILL);  // its session: the shell and what it started
  if (job.control) job.control->remove(pid);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = ending == Ending::exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  result.out = sink.tail();
  result.last_error = finish_stderr(err.fd, log.fd);
  std::filesystem::remove(err_path);
  if (ending == Ending::timed_out) {
    char text[96];
    std::snprintf(text, sizeof text, "timed out after %g s (its process group was killed)", double(job.timeout.count()) / 1000);
    result.last_error = text;
  }
  if (ending == Ending::cancelled)
    result.last_error = "stopped: wsm is shutting down (its process group was killed)";
  if (ending == Ending::exited && result.last_error.empty() && result.exit_code != 0)
    result.last_error = last_line(result.out);
  return result;
}

}  // namespace

std::vector<JobResult> run_jobs(std::span<const Job> jobs, int parallel, const JobCallbacks& callbacks) {
  std::vector<JobResult> results(jobs.size());
  std::atomic<std::size_t> next{0};
  std::mutex callback_mu;
  {
    std::vector<std::jthread> workers;
    const std::size_t n = std::min<std::size_t>(std::max(1, parallel), jobs.size());
    for (std::size_t w = 0; w < n; ++w)
      workers.emplace_back([&] {
        for (std::size_t i; (i = next.fetch_add(1)) < jobs.size();) {
          try {
            results[i] = run_one(jobs[i], i, callbacks, callback_mu);
          } catch (const std::exception& e) {
            results[i].last_error = e.what();
          }
          if (callbacks.on_done) {
            std::lock_guard lock(callback_mu);
            callbacks.on_done(i, results[i]);
          }
        }
      });
  }  // joined here
  return results;
}

void JobControl::cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  for (int pid : running_) ::killpg(pid, SIGKILL);
}

bool JobControl::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool JobControl::add(int pid) {
  std::lock_guard lock(mu_);
  if (cancelled_) return false;
  running_.insert(pid);
  return true;
}

void JobControl::remove(int pid) {
  std::lock_guard lock(mu_);
  running_.erase(pid);
}

std::filesystem::path self_executable() {
  // A rebuilt `wsm` replaces the file this process runs from; the kernel then names it "... (deleted)".
  std::string path = std::filesystem::read_symlink("/proc/self/exe").string();
  constexpr std::string_view deleted = " (deleted)";
  if (path.ends_with(deleted)) path.resize(path.size() - deleted.size());
  return path;
}

Progress::Progress(std::string label, double total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), terminal_(::isatty(STDERR_FILENO)) {}

void Progress::advance(double amount) {
  std::lock_guard lock(mu_);
  done_ = std::min(total_, done_ + amount);
  print_locked(false);
}

void Progress::finish() {
  std::lock_guard lock(mu_);
  done_ = total_;
  print_locked(true);
}

void Progress::print_locked(bool final_line) {
  const int tenths = total_ > 0 ? int(10 * done_ / total_) : 10;
  if (!terminal_ && !final_line && tenths == printed_tenths_) return;
  if (!terminal_ && final_line && printed_tenths_ == 10) return;
  printed_tenths_ = final_line ? 10 : tenths;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done_ > 0 ? secs * (total_ - done_) / done_ : 0;
  std::fprintf(stderr, "%s[%s] %.0f/%.0f %s (%3.0f%%)  elapsed %s  ETA %s%s", terminal_ ? "\r" : "", label_.c_str(),
               done_, total_, unit_.c_str(), total_ > 0 ? 100 * done_ / total_ : 100.0, trainer::format_eta(secs).c_str(),
               done_ > 0 ? trainer::format_eta(eta).c_str() : "?", terminal_ && !final_line ? "   " : "\n");
  std::fflush(stderr);
}

}  // namespace wsm::tools::compare
