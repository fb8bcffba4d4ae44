#include "protocol/formats/child_worker.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <exception>

#include "wsm/core/error.h"

namespace wsm {

namespace {

// Frames: a request is u64 length + bytes; a reply is u8 status (0 ok, 1 error) + u64 length + bytes.
constexpr std::uint8_t kOk = 0, kFailed = 1;

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

[[noreturn]] void child_main(int fd, const std::string& subject, const ChildWorker::Serve& serve) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the parent
  reset_signals();
  for (;;) {
    std::uint64_t n = 0;
    if (!recv_all(fd, &n, sizeof n)) ::_exit(0);  // parent gone or done
    std::string request(n, '\0');
    if (!recv_all(fd, request.data(), n)) ::_exit(0);
    std::uint8_t status = kOk;
    std::string reply;
    try {
      reply = serve(request);
    } catch (const Error& e) {
      status = kFailed;
      reply = e.what();
    } catch (const std::exception& e) {
      status = kFailed;
      reply = subject + ": internal error in the helper process: " + e.what();
    }
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

ChildWorker::ChildWorker(std::string subject, Serve serve) : subject_(std::move(subject)) {
  std::array<int, 2> fds{};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0)
    throw Error(subject_ + ": cannot create a socket pair for the helper process: " + std::strerror(errno));
  pid_ = ::fork();
  if (pid_ < 0) {
    const int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(subject_ + ": cannot start the helper process: " + std::strerror(err));
  }
  if (pid_ == 0) {
    ::close(fds[0]);
    child_main(fds[1], subject_, serve);
  }
  ::close(fds[1]);
  fd_ = fds[0];
}

ChildWorker::~ChildWorker() {
  if (fd_ >= 0) ::close(fd_);
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void ChildWorker::fail(const std::string& why) {
  broken_ = subject_ + ": " + why;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  throw Error(broken_);
}

std::string ChildWorker::call(std::string_view request, std::chrono::milliseconds timeout, std::uint64_t max_reply) {
  const std::lock_guard lock(mutex_);
  if (!broken_.empty()) throw Error(broken_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const std::uint64_t n = request.size();
  if (!send_all(fd_, &n, sizeof n) || !send_all(fd_, request.data(), request.size()))
    fail("the helper process went away (it crashed reading the file: corrupt or hostile input?)");
  std::uint8_t status = 0xff;
  std::uint64_t len = 0;
  std::string got = recv_until(fd_, &status, 1, deadline);
  if (got.empty()) got = recv_until(fd_, &len, sizeof len, deadline);
  if (got.empty() && (status > kFailed || len > max_reply)) got = "garbage";
  std::string reply;
  if (got.empty()) {
    reply.resize(len);
    got = recv_until(fd_, reply.data(), len, deadline);
  }
  if (got == "timeout")
    fail("the helper process reading it did not answer within " + std::to_string(timeout.count()) +
         " ms and was killed (corrupt or hostile file?)");
  if (got == "garbage") fail("the helper process reading it sent a malformed reply and was killed");
  if (got == "eof") {
    int wstatus = 0;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    const std::string how = WIFSIGNALED(wstatus) ? "crashed (signal " + std::to_string(WTERMSIG(wstatus)) + ", " +
                                                        ::strsignal(WTERMSIG(wstatus)) + ")"
                                                  : "exited";
    fail("the helper process reading it " + how + " (corrupt or hostile file?)");
  }
  if (status == kFailed) throw Error(reply);
  return reply;
}

}  // namespace wsm
