#pragma once
// The daemon's sockets: a ROUTER bound to the listen endpoint (loopback unless CURVE is
// configured), the MergerCore for message handling and the EmissionWorker for outputs.
#include <atomic>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "merger/daemon/curve_auth.h"
#include "merger/daemon/daemon_core.h"
#include "merger/daemon/emission_worker.h"
#include "merger/daemon/output_evaluator.h"
#include "merger/daemon/task_thread.h"

namespace wsm::merger {

// Replies queued per peer that is not reading them (ZMQ_SNDHWM): past it, replies to that peer are
// dropped. An honest client reads its socket and holds a few (credits, acks) at a time.
inline constexpr int kMaxQueuedReplies = 1000;

struct ServerOptions {
  std::string listen = "tcp://127.0.0.1:5555";  // "tcp://127.0.0.1:*" picks a free port
  std::string curve_secret_key_file;            // both set: CURVE on, any address allowed
  std::string curve_allow_file;
  kernels::BackendKind backend = kernels::BackendKind::cpu;
  RunnerOptions runner;
  RunningSumOptions sums;
  CoreOptions core;
  EvalOptions eval;  // eval.score set: every output (and raw checkpoint) is scored (server_eval.cpp)
};

class Server {
 public:
  explicit Server(ServerOptions options);  // restores the window from --store, then binds
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::string endpoint() const { return endpoint_; }  // the bound endpoint (real port)
  std::string public_key() const { return public_key_; }  // Z85, when CURVE is on
  // Serves until `stop` becomes true; then stops accepting, finishes the output being written,
  // and returns.
  void run(const std::atomic<bool>& stop);

  // ---- Test hooks (tests and `wsm bench ingest`; serving never calls them) ----
  // Waits until every queued output is written.
  void wait_outputs_idle() { worker_->wait_idle(); }
  // While no client sends: the window.
  const WindowStore& window() const { return core_->store(); }
  // Waits until every queued evaluation is done (none when evaluation is off).
  void wait_evals_idle() {
    if (evaluator_) evaluator_->wait_idle();
  }
  // Waits until every received checkpoint is written to --store.
  void wait_store_idle() { core_->store().wait_written(); }

 private:
  void send_all(std::vector<Outgoing>&& out);
  // Starts the evaluator (server_eval.cpp); returns what it adds to each StatusReply (its scores).
  std::function<void(v1::StatusReply&)> start_evaluator();

  ServerOptions options_;
  zmq::context_t ctx_;
  std::unique_ptr<ZapHandler> zap_;
  zmq::socket_t router_;
  std::string endpoint_, public_key_;
  std::unique_ptr<EmissionWorker> worker_;
  std::unique_ptr<TaskThread> combine_thread_;  // sharded steps' combinations (before core_: outlives it)
  std::unique_ptr<OutputEvaluator> evaluator_;  // after worker_: destroyed first (it feeds the index)
  std::unique_ptr<MergerCore> core_;
};

}  // namespace wsm::merger
