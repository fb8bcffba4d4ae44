// The C++ client of `wsm serve` (wsm/client/client.h; wire format in docs/protocol.md).
//
// send_checkpoint copies the tensors into one contiguous snapshot (buffers are recycled, so the
// copy runs at memcpy speed) and queues it; a sender thread streams queued snapshots in order:
// Hello (when the manifest or the socket is new), CheckpointBegin, chunks within the credit the
// merger grants, CheckpointEnd, then waits for the Ack. Chunk frames point into the snapshot (no
// copy). A NO_SESSION error or a silent merger starts a new socket and resends the checkpoint
// from its start until its deadline (OutagePolicy: reconnect_timeout_ms after it was queued, none,
// or the first try); OVER_BUDGET (the merger's memory is taken by other checkpoints) is waited out
// with backoff on the same socket, within the same deadline. While the merger is known to be down,
// a checkpoint past its deadline fails without another try, so an outage costs one timeout.
//
// Two rules keep the cost off the trainer and the cores: while a send_checkpoint call copies, the
// sender thread stops streaming and helps with the copy instead (it takes blocks of the snapshot
// when it is idle or between chunks; the caller copies whatever it does not), so the trainer waits
// about half a memcpy; and the sender stays at most kBytesAhead ahead of ZeroMQ's I/O thread, so a
// chunk it has just hashed is still in cache when the I/O thread copies it into the socket.
#include "wsm/client/client.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "protocol/client/snapshot.h"
#include "wsm/formats/tensor_slice.h"
#include "wsm/wire/wire.h"

namespace wsm {

namespace {

using Clock = std::chrono::steady_clock;
using client_detail::BufferPool;
using client_detail::describe;
using client_detail::kBytesAhead;
using client_detail::QueuedFrames;
using client_detail::Snapshot;
using client_detail::SnapshotCopy;

std::string random_routing_id() {
  std::random_device rd;
  std::uniform_int_distribution<std::uint64_t> dist;
  const auto v = dist(rd);
  std::string id = "wsm-";
  for (int i = 0; i < 12; ++i) id += "0123456789abcdef"[(v >> (4 * i)) & 15];
  return id;
}

// The outcome of one attempt at sending a snapshot.
enum class Attempt { acked, rejected, retry, over_budget };

// Waits between tries of a checkpoint the merger refused as OVER_BUDGET: doubling, capped.
inline constexpr std::chrono::milliseconds kFirstBudgetWait{100}, kLongestBudgetWait{2000};

}  // namespace

struct MergerClient::Impl {
  ClientOptions opt;
  zmq::context_t ctx{1};
  std::shared_ptr<BufferPool> pool;

  // Lock discipline: mu guards the members from here to `sender` (the queue, counters, flags, errors
  // and stats); the sender-thread state below belongs to the sender thread alone, which streams a
  // snapshot without holding mu.
  std::mutex mu;
  std::condition_variable room_cv, work_cv, idle_cv, copy_cv;
  std::deque<std::shared_ptr<Snapshot>> queue;  // front is in flight
  std::size_t queued_bytes = 0;
  int copying = 0;  // send_checkpoint calls copying a snapshot right now
  std::shared_ptr<SnapshotCopy> copy_job;  // the copy the sender thread may help with
  bool in_flight = false, closing = false;
  bool merger_down = false;  // the last checkpoint ran out of time unanswered; cleared by an ack
  Clock::time_point close_deadline = Clock::time_point::max();  // set by close()
  std::vector<std::string> errors;
  ClientStats stats;
  std::jthread sender;

  // Sender-thread state.
  std::optional<zmq::socket_t> socket;
  std::vector<TensorInfo> session_manifest;
  std::vector<TensorSlice> session_slices;
  bool session = false;
  std::uint32_t credit = 0;
  std::uint64_t max_chunk = 0;
  std::shared_ptr<QueuedFrames> queued_frames = std::make_shared<QueuedFrames>();

  // Sender thread, holding `lock` on mu: helps with the copy under way, if any (lock released
  // meanwhile). Returns whether there was one.
  bool help_copy(std::unique_lock<std::mutex>& lock) {
    auto job = copy_job;
    if (!job) return false;
    lock.unlock();
    job->help();
    lock.lock();
    if (copy_job == job) copy_job.reset();  // nothing left to take: do not come back for it
    return true;
  }

  void reserve(Snapshot& snap);  // room in the queue, by the policy; sets snap's deadline
  void enqueue(std::shared_ptr<Snapshot> snap);

  explicit Impl(ClientOptions o) : opt(std::move(o)), pool(std::make_shared<BufferPool>(opt.queue_bytes)) {
    if (opt.chunk_bytes == 0) throw Error("merger client: chunk_bytes must be > 0");
    if (opt.world_size < 1 || opt.rank < 0 || opt.rank >= opt.world_size || opt.local_world_size < 0 ||
        opt.local_world_size > opt.world_size)
      throw Error("merger client: rank " + std::to_string(opt.rank) + ", world size " + std::to_string(opt.world_size) +
                  ", local world size " + std::to_string(opt.local_world_size) +
                  ": need 0 <= rank < world size and local world size <= world size");
    sender = std::jthread([this] { run(); });
  }

  void fail_unreachable(const Snapshot& s) {
    fail("step " + std::to_string(s.step) + " not delivered: merger at " + opt.endpoint + " unreachable until " +
         (s.deadline <= close_deadline_snapshot() ? std::to_string(opt.reconnect_timeout_ms) + " ms after it was queued"
                                                  : std::string("close() gave up")) +
         " (policy " + std::string(outage_policy_name(opt.policy)) + ")");
    std::lock_guard lock(mu);
    merger_down = true;
  }
  Clock::time_point close_deadline_snapshot() {
    std::lock_guard lock(mu);
    return close_deadline;
  }

  // Holding mu: throws the failures not yet reported, as one wsm::Error, and forgets them.
  void throw_pending_errors() {
    if (errors.empty()) return;
    std::string all;
    for (const auto& e : errors) all += (all.empty() ? "" : "; ") + e;
    errors.clear();
    throw Error("merger client: " + all);
  }

  void fail(const std::string& what) {
    spdlog::error("merger client: {}", what);
    std::lock_guard lock(mu);
    errors.push_back(what);
    ++stats.checkpoints_failed;
  }

  void new_socket() {
    socket.reset();
    socket.emplace(ctx, zmq::socket_type::dealer);
    socket->set(zmq::sockopt::linger, 0);
    socket->set(zmq::sockopt::routing_id, random_routing_id());
    socket->set(zmq::sockopt::sndhwm, 0);  // credit bounds what is in flight
    // A DEALER with no connected peer (the merger down, or refusing our CURVE key) blocks in send;
    // bounded, an unsent message is noticed like a lost one (no reply within the stall timeout).
    socket->set(zmq::sockopt::sndtimeo, std::max(1, opt.stall_timeout_ms));
    if (opt.endpoint.rfind("tcp://[", 0) == 0) socket->set(zmq::sockopt::ipv6, true);  // tcp://[::1]:PORT
    if (!opt.curve_server_key.empty()) {
      socket->set(zmq::sockopt::curve_serverkey, opt.curve_server_key);
      socket->set(zmq::sockopt::curve_publickey, opt.curve_public_key);
      socket->set(zmq::sockopt::curve_secretkey, opt.curve_secret_key);
    }
    socket->connect(opt.endpoint);
    queued_frames = std::make_shared<QueuedFrames>();  // frames of the old socket are released on their own
    session = false;
    credit = 0;
  }

  // Waits for one message until `until`; nullopt when the merger stays silent.
  std::optional<v1::Envelope> receive_until(Clock::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    std::optional<wire::Received> r;
    try {
      r = wire::receive(*socket, wire::SocketRole::dealer, static_cast<int>(std::max<long long>(0, left)));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return std::nullopt;
      throw;
    }
    if (!r) return std::nullopt;
    if (r->fault) {
      spdlog::warn("merger client: bad message from the merger: {}", r->fault->what());
      return std::nullopt;
    }
    return std::move(r->message->envelope);
  }

  bool hello(const Snapshot& s) {
    auto env = wire::envelope();
    auto* h = env.mutable_hello();
    h->set_protocol_version(s.slices.empty() ? wire::kProtocolVersion : wire::kShardedProtocolVersion);
    h->set_run_id(opt.run_id);
    h->set_client("wsm-cpp/0.1");
    h->mutable_metadata()->insert(opt.metadata.begin(), opt.metadata.end());
    if (!s.slices.empty()) {
      h->mutable_group()->set_rank(static_cast<std::uint32_t>(opt.rank));
      h->mutable_group()->set_world_size(static_cast<std::uint32_t>(opt.world_size));
      h->mutable_group()->set_local_world_size(static_cast<std::uint32_t>(opt.local_world_size));
    }
    for (std::size_t i = 0; i < s.manifest.size(); ++i) {
      const auto& t = s.manifest[i];
      auto* spec = h->add_manifest();
      spec->set_name(s.slices.empty() ? t.name : s.names[i]);
      spec->set_dtype(std::string(dtype_name(t.dtype)));
      for (auto d : t.shape) spec->add_shape(d);
      if (s.slices.empty()) continue;
      for (auto d : s.slices[i].global_shape) spec->add_global_shape(d);
      for (auto d : s.slices[i].offsets) spec->add_offsets(d);
      spec->set_replicated(s.slices[i].replicated);
    }
    wire::send(*socket, "", env);
    const auto until = Clock::now() + std::chrono::milliseconds(opt.stall_timeout_ms);
    while (auto reply = receive_until(until)) {
      if (reply->has_welcome()) {
        session = true;
        session_manifest = s.manifest;
        session_slices = s.slices;
        credit = reply->welcome().credit();
        max_chunk = reply->welcome().max_chunk_bytes();
        return true;
      }
      if (reply->has_error()) throw Error("merger refused hello: " + reply->error().message());
    }
    return false;  // silent: the caller reconnects
  }

  // Handles one message that is not the awaited one. Returns an Attempt when it ends the attempt.
  std::optional<Attempt> on_message(const v1::Envelope& m, const Snapshot& s, bool resend, std::string& error) {
    if (m.has_credit()) {
      credit += m.credit().grant();
    } else if (m.has_error()) {
      const auto& e = m.error();
      if (e.code() == v1::NO_SESSION) return Attempt::retry;
      if (e.step() != s.step) {
        spdlog::warn("merger client: late error for step {}: {}", e.step(), e.message());
        return std::nullopt;
      }
      // DUPLICATE_STEP means the step is in the window: it got there before the break. (A step still
      // arriving from our abandoned socket is taken over by this resend, never answered so.)
      if (e.code() == v1::DUPLICATE_STEP && resend) return Attempt::acked;
      if (e.code() == v1::TIMEOUT) return Attempt::retry;
      error = "merger rejected step " + std::to_string(s.step) + ": " + e.message();
      return e.code() == v1::OVER_BUDGET ? Attempt::over_budget : Attempt::rejected;
    } else if (m.has_ack() && m.ack().step() == s.step) {
      return Attempt::acked;
    }
    return std::nullopt;
  }

  Attempt attempt(const std::shared_ptr<Snapshot>& snap, bool resend, std::string& error) {
    const Snapshot& s = *snap;
    if (!socket) new_socket();
    if (!session || session_manifest != s.manifest || session_slices != s.slices)
      if (!hello(s)) return Attempt::retry;
    const auto stall = std::chrono::milliseconds(opt.stall_timeout_ms);

    auto begin = wire::envelope();
    begin.mutable_begin()->set_step(s.step);
    begin.mutable_begin()->set_tokens(s.tokens);
    begin.mutable_begin()->set_lr(s.lr);
    wire::send(*socket, "", begin);

    wire::ChecksumChain whole;
    std::size_t chunk = opt.chunk_bytes;
    if (max_chunk && chunk > max_chunk) chunk = max_chunk;
    for (std::size_t i = 0; i < s.manifest.size(); ++i) {
      const std::size_t n = s.manifest[i].nbytes();
      for (std::size_t off = 0; off < n; off += chunk) {
        const std::size_t len = std::min(chunk, n - off);
        // Poll without waiting for what the merger sent (credit, an early rejection), and wait
        // only when out of credit.
        for (;;) {
          auto m = receive_until(credit > 0 ? Clock::now() : Clock::now() + stall);
          if (!m) {
            if (credit > 0) break;
            spdlog::warn("merger client: no credit from the merger for {} ms", opt.stall_timeout_ms);
            return Attempt::retry;
          }
          if (auto end = on_message(*m, s, resend, error)) return *end;
        }
        {
          std::unique_lock lock(mu);
          while (copying > 0)
            if (!help_copy(lock)) copy_cv.wait(lock);
        }
        if (!queued_frames->wait_for_room(len, Clock::now() + stall)) {
          spdlog::warn("merger client: ZeroMQ wrote nothing to the merger for {} ms", opt.stall_timeout_ms);
          return Attempt::retry;
        }
        const std::span<const std::byte> bytes(s.data(i) + off, len);
        auto env = wire::envelope();
        auto* c = env.mutable_chunk();
        c->set_step(s.step);
        c->set_name(s.manifest[i].name);
        c->set_offset(off);
        c->set_length(len);
        c->set_checksum(wire::checksum(bytes));
        whole.add(c->checksum());
        // The frame's owner keeps the snapshot alive and tells queued_frames when ZeroMQ is done.
        queued_frames->add(len);
        std::shared_ptr<const void> owner(snap.get(), [snap, q = queued_frames, len](const void*) { q->done(len); });
        wire::send(*socket, "", env, wire::borrowed_frame(std::move(owner), bytes.data(), len));
        --credit;
        std::lock_guard lock(mu);
        stats.bytes_sent += len;
      }
    }
    auto end = wire::envelope();
    end.mutable_end()->set_step(s.step);
    end.mutable_end()->set_total_bytes(s.total);
    end.mutable_end()->set_checksum(whole.digest());
    wire::send(*socket, "", end);
    for (;;) {
      auto m = receive_until(Clock::now() + stall);
      if (!m) {
        spdlog::warn("merger client: no ack for step {} after {} ms", s.step, opt.stall_timeout_ms);
        return Attempt::retry;
      }
      if (auto r = on_message(*m, s, resend, error)) return *r;
    }
  }

  // Sleeps before the next try of a step refused as OVER_BUDGET (the merger frees memory as other
  // checkpoints complete or leave the window); false, and the step failed, once past the deadline.
  bool wait_for_budget(std::chrono::milliseconds& wait, Clock::time_point deadline, std::int64_t step,
                       const std::string& error) {
    const auto now = Clock::now();
    if (now >= deadline) {
      fail(error + " (still over the merger's memory budget after " + std::to_string(opt.reconnect_timeout_ms) + " ms)");
      return false;
    }
    const auto pause = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now));
    spdlog::warn("merger client: step {} does not fit the merger's memory budget now; trying again in {} ms", step,
                 pause.count());
    std::this_thread::sleep_for(pause);
    wait = std::min(wait * 2, kLongestBudgetWait);
    std::lock_guard lock(mu);
    ++stats.budget_waits;
    return true;
  }

  // The snapshot's deadline, or close()'s when that is sooner.
  Clock::time_point deadline_of(const Snapshot& s) {
    std::lock_guard lock(mu);
    return std::min(s.deadline, close_deadline);
  }

  void send_one(const std::shared_ptr<Snapshot>& snap) {
    bool resend = false;
    auto budget_wait = kFirstBudgetWait;
    for (;;) {
      const auto deadline = deadline_of(*snap);
      std::string error;
      Attempt a;
      try {
        a = attempt(snap, resend, error);
      } catch (const std::exception& e) {
        fail("step " + std::to_string(snap->step) + ": " + e.what());
        socket.reset();  // a refused hello: start clean next time
        return;
      }
      if (a == Attempt::acked) {
        std::lock_guard lock(mu);
        ++stats.checkpoints_acked;
        merger_down = false;
        return;
      }
      if (a == Attempt::rejected) {
        fail(error);
        return;
      }
      if (opt.policy == OutagePolicy::fail_fast) {
        fail("step " + std::to_string(snap->step) + " not delivered at the first try (merger at " + opt.endpoint +
             (error.empty() ? "" : ": " + error) + "; policy fail-fast)");
        socket.reset();
        return;
      }
      if (a == Attempt::over_budget) {
        if (!wait_for_budget(budget_wait, deadline, snap->step, error)) return;
        continue;  // same socket and session: the merger dropped what it had of this step
      }
      if (Clock::now() >= deadline) {
        fail_unreachable(*snap);
        socket.reset();
        return;
      }
      spdlog::warn("merger client: reconnecting to {} to resend step {}", opt.endpoint, snap->step);
      new_socket();
      resend = true;
      std::lock_guard lock(mu);
      ++stats.reconnects;
      ++stats.resends;
    }
  }

  void run() {
    for (;;) {
      std::shared_ptr<Snapshot> snap;
      {
        std::unique_lock lock(mu);
        work_cv.wait(lock, [&] { return closing || !queue.empty() || copy_job; });
        if (help_copy(lock)) continue;
        if (queue.empty()) break;
        snap = queue.front();
        in_flight = true;
      }
      bool down;
      {
        std::lock_guard lock(mu);
        down = merger_down;
      }
      if (down && Clock::now() >= deadline_of(*snap))
        fail_unreachable(*snap);  // the merger is away and this one's time is up: no other try
      else
        send_one(snap);
      {
        std::lock_guard lock(mu);
        queue.pop_front();
        queued_bytes -= snap->total;
        in_flight = false;
      }
      snap.reset();
      room_cv.notify_all();
      idle_cv.notify_all();
    }
    if (socket && session) {
      try {
        auto bye = wire::envelope();
        bye.mutable_bye();
        wire::send(*socket, "", bye);
      } catch (const zmq::error_t&) {
      }
    }
    socket.reset();
  }
};

MergerClient::MergerClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

MergerClient::~MergerClient() {
  try {
    close();
  } catch (const std::exception& e) {  // close() reports; only a failing log or join could land here
    spdlog::error("merger client: {}", e.what());
  }
}

OutagePolicy parse_outage_policy(std::string_view text) {
  for (const auto p : {OutagePolicy::drop_oldest, OutagePolicy::wait, OutagePolicy::fail_fast})
    if (text == outage_policy_name(p)) return p;
  throw Error("unknown merger outage policy '" + std::string(text) + "' (choose one of: drop-oldest, wait, fail-fast)");
}

std::string_view outage_policy_name(OutagePolicy policy) {
  switch (policy) {
    case OutagePolicy::drop_oldest: return "drop-oldest";
    case OutagePolicy::wait: return "wait";
    case OutagePolicy::fail_fast: return "fail-fast";
  }
  return "?";
}

void MergerClient::Impl::reserve(Snapshot& snap) {
  std::unique_lock lock(mu);
  if (closing) throw Error("send_checkpoint: the merger client is closed");
  if (opt.policy == OutagePolicy::fail_fast) throw_pending_errors();
  const auto full = [&] { return !queue.empty() && queued_bytes + snap.total > opt.queue_bytes; };
  switch (opt.policy) {
    case OutagePolicy::wait:  // memory stays bounded; training pauses only while the merger lags this far
      if (full()) {
        spdlog::warn("merger client: {} bytes queued (queue_bytes {}); step {} waits for room", queued_bytes,
                     opt.queue_bytes, snap.step);
        ++stats.queue_waits;
        room_cv.wait(lock, [&] { return !full(); });
      }
      break;
    case OutagePolicy::drop_oldest:  // the checkpoint in flight stays; the oldest waiting ones go
      while (full() && queue.size() > (in_flight ? 1u : 0u)) {
        const auto oldest = queue.begin() + (in_flight ? 1 : 0);
        const std::string what = "step " + std::to_string((*oldest)->step) +
                                 " dropped undelivered to make room for step " + std::to_string(snap.step) +
                                 " (queue_bytes " + std::to_string(opt.queue_bytes) + ", policy drop-oldest)";
        spdlog::warn("merger client: {}", what);
        errors.push_back(what);
        ++stats.checkpoints_dropped;
        queued_bytes -= (*oldest)->total;
        queue.erase(oldest);
      }
      break;
    case OutagePolicy::fail_fast:
      if (full())
        throw Error("merger client: step " + std::to_string(snap.step) + ": " + std::to_string(queued_bytes) +
                    " bytes still queued (queue_bytes " + std::to_string(opt.queue_bytes) + ", policy fail-fast)");
      break;
  }
  if (opt.policy == OutagePolicy::drop_oldest)
    snap.deadline = Clock::now() + std::chrono::milliseconds(opt.reconnect_timeout_ms);
  queued_bytes += snap.total;  // reserved before copying, outside the lock
}

void MergerClient::Impl::enqueue(std::shared_ptr<Snapshot> snap) {
  {
    std::lock_guard lock(mu);
    queue.push_back(std::move(snap));
  }
  work_cv.notify_one();
}

void MergerClient::send_checkpoint(std::int64_t step, std::int64_t tokens, double lr, std::span<const TensorView> tensors) {
  auto& im = *impl_;
  auto snap = describe(step, tokens, lr, tensors, im.opt);
  im.reserve(*snap);
  snap->buffer = im.pool->take(snap->total);
  snap->pool = im.pool;
  auto copy = std::make_shared<SnapshotCopy>();
  for (std::size_t i = 0; i < tensors.size(); ++i)
    copy->add(snap->buffer.bytes.get() + snap->offsets[i], tensors[i].data.data(), tensors[i].data.size());
  {
    std::lock_guard lock(im.mu);
    ++im.copying;  // the sender thread stops streaming meanwhile, and helps when it can
    if (copy->shareable()) im.copy_job = copy;
  }
  im.work_cv.notify_all();
  im.copy_cv.notify_all();
  copy->help();
  copy->wait_done();
  {
    std::lock_guard lock(im.mu);
    --im.copying;
    if (im.copy_job == copy) im.copy_job.reset();
  }
  im.copy_cv.notify_all();
  im.enqueue(std::move(snap));
}

void MergerClient::send_checkpoint_owned(std::int64_t step, std::int64_t tokens, double lr,
                                         std::span<const TensorView> tensors, std::shared_ptr<const void> owner) {
  if (!owner) throw Error("send_checkpoint_owned: no owner for the tensors' bytes");
  auto& im = *impl_;
  auto snap = describe(step, tokens, lr, tensors, im.opt);
  for (const auto& t : tensors) snap->in_place.push_back(t.data.data());
  snap->owner = std::move(owner);
  im.reserve(*snap);
  im.enqueue(std::move(snap));
}

void MergerClient::flush() {
  auto& im = *impl_;
  std::unique_lock lock(im.mu);
  im.idle_cv.wait(lock, [&] { return im.queue.empty() && !im.in_flight; });
  im.throw_pending_errors();
}

void MergerClient::close() {
  if (!impl_ || !impl_->sender.joinable()) return;
  auto& im = *impl_;
  std::unique_lock lock(im.mu);
  const auto bound = std::chrono::milliseconds(im.opt.reconnect_timeout_ms) + std::chrono::milliseconds(im.opt.stall_timeout_ms);
  im.close_deadline = Clock::now() + bound;
  im.idle_cv.wait(lock, [&] { return im.queue.empty() && !im.in_flight; });
  im.closing = true;
  const ClientStats st = im.stats;
  std::string first = im.errors.empty() ? "" : im.errors.front();
  im.errors.clear();
  lock.unlock();
  im.work_cv.notify_all();
  im.sender.join();
  if (!first.empty())
    spdlog::error("merger client closed: {} acknowledged, {} failed, {} dropped; first: {}", st.checkpoints_acked,
                  st.checkpoints_failed, st.checkpoints_dropped, first);
}

ClientStats MergerClient::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

}  // namespace wsm
