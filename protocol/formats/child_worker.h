#pragma once
// A helper process that answers requests over a socket pair, so that code which may crash or hang
// on hostile input (libhdf5 parsing a foreign file) runs outside wsm's own process. The parent
// bounds every call with a time limit; a crash, a hang or a malformed reply becomes a one-line
// wsm::Error naming the helper's subject (the file), and the helper is killed.
//
// The child is a fork() of the caller, made while the caller holds whatever lock guards the state
// the child will use (fork copies only the calling thread). It never returns into the caller's
// code: it serves requests until the parent goes away, then _exit()s (no atexit handlers, no
// flushing of the parent's stdio buffers).
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
  // back and rethrown by call() with its message unchanged.
  using Serve = std::function<std::string(std::string_view request)>;

  // Forks the helper. `subject` names what it works on in every error ("data/x.h5").
  ChildWorker(std::string subject, Serve serve);
  ~ChildWorker();  // SIGKILLs and reaps the helper
  ChildWorker(const ChildWorker&) = delete;
  ChildWorker& operator=(const ChildWorker&) = delete;

  // Sends one request and waits up to `timeout` for the reply, which may be at most `max_reply`
  // bytes. Throws wsm::Error when the helper reports an error, crashed, timed out or replied
  // garbage; after anything but a reported error the helper is gone and every later call throws
  // the same message. Calls from several threads are serialised.
  std::string call(std::string_view request, std::chrono::milliseconds timeout, std::uint64_t max_reply);

 private:
  [[noreturn]] void fail(const std::string& why);  // kills the helper, remembers and throws why
  std::string subject_;
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string broken_;  // set once the helper is unusable
  std::mutex mutex_;
};

}  // namespace wsm
