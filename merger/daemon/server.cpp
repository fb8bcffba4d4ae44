#include "merger/daemon/server.h"

#include <cerrno>

#include <spdlog/spdlog.h>

#include "merger/engine/stale_temporaries.h"
#include "wsm/formats/mapped_file.h"
#include "wsm/wire/bounded_receive.h"

namespace wsm::merger {

namespace {
// ZeroMQ binds numeric addresses and interface names, not host names: "localhost" is bound as
// 127.0.0.1 (the address it names everywhere wsm runs).
std::string bindable(const std::string& endpoint) {
  const std::string localhost = "tcp://localhost:";
  if (endpoint.rfind(localhost, 0) == 0) return "tcp://127.0.0.1:" + endpoint.substr(localhost.size());
  return endpoint;
}
bool is_ipv6(const std::string& endpoint) { return endpoint.rfind("tcp://[", 0) == 0; }
}  // namespace

Server::Server(ServerOptions options) : options_(std::move(options)), ctx_(1) {
  // Every path the daemon records (index.json, the output feed, status) then names the same file
  // from any working directory; index.json also gives each relative to --out ("file").
  options_.core.out_dir = std::filesystem::absolute(options_.core.out_dir).lexically_normal();
  const bool curve = !options_.curve_secret_key_file.empty() || !options_.curve_allow_file.empty();
  if (curve && (options_.curve_secret_key_file.empty() || options_.curve_allow_file.empty()))
    throw Error("CURVE needs both --curve-secret-key and --curve-allow");
  if (!curve && !wire::is_loopback_endpoint(options_.listen))
    throw Error("refusing to listen on " + options_.listen +
                " without CURVE: bind to 127.0.0.1 or give --curve-secret-key FILE --curve-allow FILE");

  // What a process killed mid-write left behind goes before anything reads these folders (the
  // output index is then reconciled with the outputs present, output_index.h).
  sweep_stale_temporaries(options_.core.out_dir);
  sweep_stale_temporaries(options_.core.store.store_dir);
  guard_mapped_reads();  // a store file truncated under a read: an output error, not SIGBUS
  worker_ = std::make_unique<EmissionWorker>(kernels::make_backend(options_.backend), options_.core.out_dir,
                                             options_.runner, options_.sums);
  combine_thread_ = std::make_unique<TaskThread>();
  CoreHooks hooks;
  hooks.combine = [t = combine_thread_.get()](std::function<void()> task) { t->post(std::move(task)); };
  hooks.pending = [w = worker_.get()] { return w->pending(); };
  hooks.running_sum_bytes = [w = worker_.get()] { return w->running_sum_bytes(); };
  if (options_.eval.score) hooks.status_extra = start_evaluator();
  core_ = std::make_unique<MergerCore>(
      options_.core, [w = worker_.get()](EmissionJob job) { w->submit(std::move(job)); }, std::move(hooks));
  core_->restore();

  if (curve) zap_ = std::make_unique<ZapHandler>(ctx_, read_allowed_keys(options_.curve_allow_file));
  router_ = zmq::socket_t(ctx_, zmq::socket_type::router);
  router_.set(zmq::sockopt::linger, 0);
  router_.set(zmq::sockopt::rcvhwm, 0);  // credit bounds what clients send; never drop
  // Replies queued for one peer: a peer that asks and never reads gets its replies dropped past
  // this many (ROUTER drops at the high-water mark) instead of growing the daemon without bound.
  router_.set(zmq::sockopt::sndhwm, kMaxQueuedReplies);
  if (curve) {
    const auto secret = read_z85_key(options_.curve_secret_key_file);
    public_key_ = curve_public_from_secret(secret);
    router_.set(zmq::sockopt::zap_domain, "wsm");
    router_.set(zmq::sockopt::curve_server, true);
    router_.set(zmq::sockopt::curve_secretkey, secret);
  }
  // A frame larger than a chunk (plus room for a large manifest) disconnects its sender before
  // ZeroMQ allocates it: one garbage frame cannot take the daemon's memory.
  router_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(max_message_bytes(options_.core)));
  if (is_ipv6(options_.listen)) router_.set(zmq::sockopt::ipv6, true);
  router_.bind(bindable(options_.listen));
  endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  spdlog::info("merger {} listening on {}{} (emulations: {}, every {} steps, out {})", core_->server_id(), endpoint_,
               curve ? " with CURVE" : "", options_.core.emulations.size(), options_.core.every,
               options_.core.out_dir.string());
}

Server::~Server() {
  if (worker_) worker_->stop();
  if (evaluator_) evaluator_->stop();
}

void Server::send_all(std::vector<Outgoing>&& out) {
  for (auto& o : out) {
    try {
      wire::send(router_, o.peer, o.envelope);
    } catch (const zmq::error_t& e) {
      spdlog::warn("reply to a departed peer dropped: {}", e.what());
    }
  }
}

void Server::run(const std::atomic<bool>& stop) {
  auto last_expire = Clock::now();
  while (!stop.load()) {
    std::optional<wire::Received> r;
    try {
      // While credit is withheld, look at the store writer often.
      r = wire::receive(router_, wire::SocketRole::router, core_->withholding_credit() ? 5 : 50,
                        max_envelope_bytes(options_.core));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;  // a signal: the loop condition decides
      throw;
    }
    const auto now = Clock::now();
    try {
      send_all(core_->pump());  // before the message: a status reply sees what the writer finished
      if (r) {
        if (r->message) send_all(core_->handle(std::move(*r->message), now));
        else if (r->fault) send_all(core_->fault(r->peer, *r->fault, now));
      }
      for (auto& c : worker_->take_completions()) send_all(core_->job_done(c.job, c.records, c.error));
      if (now - last_expire > std::chrono::milliseconds(100)) {
        send_all(core_->expire(now));
        last_expire = now;
      }
    } catch (const std::exception& e) {
      // handle() answers every message itself; this is the last guard of the loop (memory
      // exhaustion, a bug): the daemon logs it and serves on.
      spdlog::error("merger loop: {}", e.what());
    }
  }
  spdlog::info("shutting down: no longer accepting checkpoints; finishing the output being written");
  core_->stop_accepting();
  router_.close();
  worker_->stop();
  core_->flush_store();  // first: acknowledged checkpoints reach the store, whatever scoring does
  if (evaluator_) evaluator_->stop();  // kills the scoring command running; queued ones wait for a restart
  spdlog::info("merger stopped");
}

}  // namespace wsm::merger
