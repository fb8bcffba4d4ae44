#include "tools/compare/jobs.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
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

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, write_end.fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.fd, STDERR_FILENO);
  std::vector<char*> argv;
  for (const auto& a : job.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    result.last_error = std::string("cannot start ") + job.argv[0] + ": " + std::strerror(rc);
    return result;
  }
  ::close(write_end.fd);
  write_end.fd = -1;

  std::string pending;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(read_end.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.out.append(buf, std::size_t(n));
    [[maybe_unused]] const ssize_t w = ::write(log.fd, buf, std::size_t(n));
    pending.append(buf, std::size_t(n));
    for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1)) {
      if (!callbacks.on_line) continue;
      std::lock_guard lock(callback_mu);
      callbacks.on_line(index, pending.substr(0, nl));
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  // stderr: keep its last line for messages, and append it to the log after stdout.
  std::string err_text;
  ::lseek(err.fd, 0, SEEK_SET);
  for (ssize_t n; (n = ::read(err.fd, buf, sizeof buf)) > 0;) err_text.append(buf, std::size_t(n));
  [[maybe_unused]] const ssize_t w = ::write(log.fd, err_text.data(), err_text.size());
  std::filesystem::remove(err_path);
  result.last_error = last_line(err_text);
  if (result.last_error.empty() && result.exit_code != 0) result.last_error = last_line(result.out);
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
