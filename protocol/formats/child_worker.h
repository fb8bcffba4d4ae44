#pragma once
// A helper process that answers requests over a socket pair, so that code which may crash or hang
// on hostile input (libhdf5 parsing a foreign file) runs outside wsm's own process. The parent
// bounds every call with a time limit; a crash, a hang or a malformed reply becomes a one-line
// wsm::Error naming that call's subject (the file), and the helper is killed and reaped.
//
// The helper is persistent: started by the first call, it serves call after call (one fork for many
// files, not one per file). After it died or was killed, the next call starts a fresh one, so one
// hostile file costs one error; whatever the dead helper kept from earlier requests is gone
// (`starts()` tells the caller). The destructor kills and reaps whatever helper runs: no process or
// descriptor outlives the ChildWorker.
//
// The child is a fork() of the caller (made inside `around_fork`, which holds whatever lock guards
// the state the child will use: fork copies only the calling thread). It keeps only its socket and
// stdin/stdout/stderr open (no copies of the parent's sockets and files), never returns into the
// caller's code, and ends by itself when the parent goes away: at end of file between requests, and
// through its own alarm when one request runs far past its time limit (the parent is gone or stuck).
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace wsm {

class ChildWorker {
 public:
  // Runs in the child, once per request; its result is the reply. A wsm::Error it throws is sent
  // back and rethrown by call() with its message made one line (printable.h: the helper's text is
  // untrusted). State it keeps lives in the child.
  using Serve = std::function<std::string(std::string_view request)>;
  // Runs `fork` (which starts the helper) inside whatever guard the caller needs around a fork.
  using AroundFork = std::function<void(const std::function<void()>& fork)>;

  explicit ChildWorker(Serve serve, AroundFork around_fork = {});
  ~ChildWorker();  // SIGKILLs and reaps the helper, if one runs
  ChildWorker(const ChildWorker&) = delete;
  ChildWorker& operator=(const ChildWorker&) = delete;

  // Sends one request (starting a helper when none runs) and waits up to `timeout` for the reply,
  // which may be at most `max_reply` bytes. Throws wsm::Error when the helper reports an error, or
  // crashed, timed out or replied garbage: then the message starts with `subject` ("data/x.h5: ")
  // and the helper is gone (the next call starts another). Calls from several threads are serialised.
  std::string call(const std::string& subject, std::string_view request, std::chrono::milliseconds timeout,
                   std::uint64_t max_reply);

  // How many helpers were started so far; a helper's state is gone when this changed. 0: none yet.
  std::uint64_t starts() const;
  // True while a helper process runs (it is reaped when it is found dead).
  bool running() const;

 private:
  void start();
  void stop() noexcept;  // SIGKILL, close, reap
  bool reap_if_dead();   // true when the helper had exited (it is reaped)
  [[noreturn]] void fail(const std::string& subject, const std::string& why);

  Serve serve_;
  AroundFork around_fork_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::uint64_t starts_ = 0;
  mutable std::mutex mutex_;  // guards pid_, fd_ and starts_: one request at a time
};

}  // namespace wsm
