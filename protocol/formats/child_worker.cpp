#include "protocol/formats/child_worker.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>

#include "wsm/core/error.h"
#include "wsm/core/printable.h"

namespace wsm {

namespace {

// Frames: a request is u64 time limit (ms) + u64 length + bytes; a reply is u8 status + u64 length +
// bytes, the status 0 (ok), 1 (a wsm::Error's message) or 2 (another exception's, naming no file).
constexpr std::uint8_t kOk = 0, kFailed = 1, kInternal = 2;

bool send_all(int fd, const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Blocking read of exactly n bytes (the child's side); false on EOF or error.
bool recv_all(int fd, void* data, std::size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// The child's own signal state: default dispositions and nothing blocked, so a Ctrl-C or SIGTERM
// meant for the process group ends it rather than running the parent's handlers on copied state,
// and a crash is a plain death by signal (not a sanitizer's or fuzzer's report about the parent).
void reset_signals() {
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT,
                SIGALRM})
    ::signal(s, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Only the socket to the parent (moved to fd 3) and stdin/stdout/stderr stay open: a long-lived
// helper must not hold copies of the parent's sockets and files (a peer would never see them close).
int keep_only_socket(int fd) {
  if (fd != 3) {
    ::dup2(fd, 3);
    ::close(fd);
  }
  if (::close_range(4, ~0U, 0) != 0) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    for (rlim_t i = 4; i < std::min<rlim_t>(lim.rlim_cur, 1 << 20); ++i) ::close(static_cast<int>(i));
  }
  return 3;
}

// The child's own deadline for one request: far past the parent's limit, so it only fires when the
// parent is gone or stuck and nobody else would ever stop a hang (SIGALRM's default action kills).
void arm_alarm(std::uint64_t timeout_ms) {
  const std::uint64_t ms = std::min<std::uint64_t>(timeout_ms, 1ull << 40) * 2 + 5000;
  itimerval t{};
  t.it_value.tv_sec = static_cast<time_t>(ms / 1000);
  t.it_value.tv_usec = static_cast<suseconds_t>(ms % 1000 * 1000);
  ::setitimer(ITIMER_REAL, &t, nullptr);
}
void disarm_alarm() {
  itimerval t{};
  ::setitimer(ITIMER_REAL, &t, nullptr);
}

[[noreturn]] void child_main(int fd, const ChildWorker::Serve& serve) {
  reset_signals();
  fd = keep_only_socket(fd);
  for (;;) {
    std::array<std::uint64_t, 2> head{};  // time limit (ms), request length
    if (!recv_all(fd, head.data(), sizeof head)) ::_exit(0);  // parent gone or done
    std::string request(head[1], '\0');
    if (!recv_all(fd, request.data(), request.size())) ::_exit(0);
    arm_alarm(head[0]);
    std::uint8_t status = kOk;
    std::string reply;
    try {
      reply = serve(request);
    } catch (const Error& e) {
      status = kFailed;
      reply = e.what();
    } catch (const std::exception& e) {
      status = kInternal;
      reply = e.what();
    }
    disarm_alarm();
    const std::uint64_t len = reply.size();
    if (!send_all(fd, &status, 1) || !send_all(fd, &len, sizeof len) || !send_all(fd, reply.data(), reply.size()))
      ::_exit(0);
  }
}

// Reads exactly n bytes before `deadline`. Returns "" on success, else what went wrong.
std::string recv_until(int fd, void* data, std::size_t n, std::chrono::steady_clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return "timeout";
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) return "timeout";
    const ssize_t r = ::recv(fd, p, n, MSG_DONTWAIT);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) return "eof";
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return "";
}

}  // namespace

ChildWorker::ChildWorker(Serve serve, AroundFork around_fork)
    : serve_(std::move(serve)), around_fork_(std::move(around_fork)) {}

ChildWorker::~ChildWorker() { stop(); }

void ChildWorker::start() {
  std::array<int, 2> fds{};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0)
    throw Error(std::string("cannot create a socket pair for the helper process: ") + std::strerror(errno));
  int err = 0;
  const auto fork_it = [&] {
    pid_ = ::fork();
    err = errno;
    if (pid_ == 0) {
      ::close(fds[0]);
      child_main(fds[1], serve_);
    }
  };
  if (around_fork_) around_fork_(fork_it);
  else fork_it();
  ::close(fds[1]);
  if (pid_ < 0) {
    ::close(fds[0]);
    throw Error(std::string("cannot start the helper process: ") + std::strerror(err));
  }
  fd_ = fds[0];
  ++starts_;
}

void ChildWorker::stop() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

bool ChildWorker::reap_if_dead() {
  int status = 0;
  if (pid_ <= 0 || ::waitpid(pid_, &status, WNOHANG) != pid_) return false;
  pid_ = -1;
  stop();
  return true;
}

std::uint64_t ChildWorker::starts() const {
  const std::lock_guard lock(mutex_);
  return starts_;
}

bool ChildWorker::running() const {
  const std::lock_guard lock(mutex_);
  return pid_ > 0;
}

void ChildWorker::fail(const std::string& subject, const std::string& why) {
  stop();
  throw Error(subject + ": " + why);
}

std::string ChildWorker::call(const std::string& subject, std::string_view request, std::chrono::milliseconds timeout,
                              std::uint64_t max_reply) {
  const std::lock_guard lock(mutex_);
  reap_if_dead();  // died while idle (killed from outside): this request goes to a fresh one
  if (pid_ <= 0) {
    try {
      start();
    } catch (const Error& e) {
      throw Error(subject + ": " + e.what());
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::array<std::uint64_t, 2> head{static_cast<std::uint64_t>(std::max<std::int64_t>(timeout.count(), 0)),
                                          request.size()};
  if (!send_all(fd_, head.data(), sizeof head) || !send_all(fd_, request.data(), request.size()))
    fail(subject, "the helper process went away (it crashed reading the file: corrupt or hostile input?)");
  std::uint8_t status = 0xff;
  std::uint64_t len = 0;
  std::string got = recv_until(fd_, &status, 1, deadline);
  if (got.empty()) got = recv_until(fd_, &len, sizeof len, deadline);
  if (got.empty() && (status > kInternal || len > max_reply)) got = "garbage";
  std::string reply;
  if (got.empty()) {
    reply.resize(len);
    got = recv_until(fd_, reply.data(), len, deadline);
  }
  if (got == "timeout")
    fail(subject, "the helper process reading it did not answer within " + std::to_string(timeout.count()) +
                      " ms and was killed (corrupt or hostile file?)");
  if (got == "garbage") fail(subject, "the helper process reading it sent a malformed reply and was killed");
  if (got == "eof") {
    int wstatus = 0;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    const std::string how = WIFSIGNALED(wstatus) ? "crashed (signal " + std::to_string(WTERMSIG(wstatus)) + ", " +
                                                        ::strsignal(WTERMSIG(wstatus)) + ")"
                                                  : "exited";
    fail(subject, "the helper process reading it " + how + " (corrupt or hostile file?)");
  }
  // The helper's text is untrusted (a hostile file may be steering it): one line, whatever it sent.
  if (status == kFailed) throw Error(printable(reply));
  if (status == kInternal) throw Error(subject + ": internal error in the helper process: " + printable(reply));
  return reply;
}

}  // namespace wsm
