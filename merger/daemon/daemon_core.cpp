#include "merger/daemon/daemon_core.h"

#include <algorithm>
#include <random>

#include <spdlog/spdlog.h>

#include "merger/daemon/hello_metadata.h"
#include "merger/daemon/resend_check.h"
#include "merger/daemon/run_id.h"
#include "wsm/core/version.h"

namespace wsm::merger {

using wire::ProtocolError;

namespace {
std::string random_id() {
  std::random_device rd;
  std::uniform_int_distribution<std::uint64_t> dist;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(dist(rd)));
  return buf;
}
void append(std::vector<Outgoing>& out, std::vector<OutputFeed::Reply> replies) {
  for (auto& [peer, env] : replies) out.push_back({std::move(peer), std::move(env)});
}
// A sharded rank's slices (sharded_group.h), the same way.
std::uint64_t slices_footprint(const std::vector<PartEntry>& entries) {
  std::uint64_t bytes = sizeof(entries) + entries.capacity() * sizeof(PartEntry);
  for (const auto& e : entries)
    bytes += e.entry.capacity() + e.name.capacity() + 2 +
             (e.slice.global_shape.capacity() + e.slice.offsets.capacity() + e.slice.lengths.capacity()) * sizeof(std::int64_t);
  return bytes;
}
Outgoing error_to(const std::string& peer, const ProtocolError& e, std::int64_t step = 0, std::uint64_t request = 0) {
  return {peer, wire::error_envelope(e.code(), e.what(), step, request)};
}
}  // namespace

std::uint64_t max_message_bytes(const CoreOptions& options) {
  const std::uint64_t largest = std::max<std::uint64_t>(options.max_chunk_bytes, 16ull << 20);
  return std::min(largest, std::max<std::uint64_t>(options.store.memory_budget, 1ull << 20)) + (1ull << 20);
}

std::uint64_t max_envelope_bytes(const CoreOptions& options) {
  return std::clamp<std::uint64_t>(options.store.memory_budget / 32, 256ull << 10, 16ull << 20);
}

MergerCore::MergerCore(CoreOptions options, JobSink sink, CoreHooks hooks)
    : options_(std::move(options)),
      sink_(std::move(sink)),
      hooks_(std::move(hooks)),
      store_(options_.store, options_.emulations),
      sessions_(options_.max_sessions),
      combiner_(std::move(hooks_.combine)) {
  if (options_.server_id.empty()) options_.server_id = random_id();
  if (options_.credit == 0) options_.credit = 1;
  // The window spills to leave room for what else the budget holds.
  store_.set_extra_bytes([this] { return running_sum_bytes() + partial_bytes() + runs_.bytes(); });
  feed_ = OutputFeed(options_.server_id);
}

void MergerCore::restore() {
  store_.rebuild_from_disk();
  for (const auto& run : store_.runs()) runs_.advance(run, store_.newest_step(run));
}

std::vector<Outgoing> MergerCore::handle(wire::Message msg, Clock::time_point now) {
  std::vector<Outgoing> out;
  const std::string peer = msg.peer;
  try {
    dispatch(msg, now, out);
  } catch (const std::exception& e) {
    // Every message ends in a reply, never in an exit: a failure no handler foresaw is answered
    // like a malformed message (and poisons the sender's partial checkpoint, if any).
    const auto* pe = dynamic_cast<const ProtocolError*>(&e);
    auto more = fault(peer, pe ? *pe : ProtocolError(v1::INTERNAL, std::string("cannot handle this message: ") + e.what()), now);
    out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  return out;
}

void MergerCore::dispatch(wire::Message& msg, Clock::time_point now, std::vector<Outgoing>& out) {
  const auto& env = msg.envelope;
  switch (env.body_case()) {
    case v1::Envelope::kHello:
      on_hello(msg, now, out);
      return;
    case v1::Envelope::kStatusRequest: {
      auto reply = wire::envelope();
      *reply.mutable_status_reply() = status(now);
      out.push_back({msg.peer, std::move(reply)});
      return;
    }
    case v1::Envelope::kMergeRequest:
      on_merge_request(msg, out);
      return;
    case v1::Envelope::kOutputsRequest:
      try {
        append(out, feed_.request(msg.peer, env.outputs_request(), now));
      } catch (const ProtocolError& e) {  // answered here: it must not poison a checkpoint this peer is sending
        out.push_back(error_to(msg.peer, e));
      }
      return;
    case v1::Envelope::kBye:
      if (auto it = sessions_.find(msg.peer); it != sessions_.end()) end_session(it);
      return;
    case v1::Envelope::kBegin:
    case v1::Envelope::kChunk:
    case v1::Envelope::kEnd:
      break;
    default:
      out.push_back(error_to(msg.peer, ProtocolError(v1::UNKNOWN_MESSAGE, "message type " +
                                                                           std::to_string(env.body_case()) +
                                                                           " is not accepted by the merger")));
      return;
  }

  const std::int64_t step = env.has_begin() ? env.begin().step() : env.has_chunk() ? env.chunk().step() : env.end().step();
  auto it = sessions_.find(msg.peer);
  if (it == sessions_.end()) {
    // After a daemon restart a client's traffic arrives without a session: this error makes it
    // say hello again and resend its checkpoint from the start.
    out.push_back(error_to(msg.peer, ProtocolError(v1::NO_SESSION, "no session for peer " + show_peer(msg.peer) +
                                                                         " (send hello first)"), step));
    return;
  }
  Session& s = it->second;
  s.last_seen = now;
  if (env.has_begin()) on_begin(s, msg.peer, env.begin(), out);
  else if (env.has_chunk()) on_chunk(s, msg, out);
  else on_end(s, msg.peer, env.end(), out);
}

std::vector<Outgoing> MergerCore::fault(const std::string& peer, const ProtocolError& error, Clock::time_point now) {
  spdlog::warn("peer {}: {}", show_peer(peer), error.what());
  std::vector<Outgoing> out;
  auto it = sessions_.find(peer);
  if (it != sessions_.end()) {
    it->second.last_seen = now;
    if (it->second.partial) {
      // A malformed message in the middle of a checkpoint poisons it.
      const auto step = it->second.partial->step();
      reject(it->second, peer, step, error, out);
      return out;
    }
  }
  out.push_back(error_to(peer, error));
  return out;
}

// What a Hello asks for, filled in by the steps of on_hello.
struct MergerCore::HelloPlan {
  std::shared_ptr<const ModelMetadata> metadata;  // nullptr: the Hello has none
  std::optional<GroupMember> member;              // a rank of a sharded run
  std::shared_ptr<const Manifest> manifest;       // a sharded rank's: its slices
  std::uint64_t bytes = 0;                        // one checkpoint of the manifest
  std::uint64_t footprint = 0;                    // what the Hello adds to the manifests in RAM
};

void MergerCore::on_hello(const wire::Message& msg, Clock::time_point now, std::vector<Outgoing>& out) {
  const auto& hello = msg.envelope.hello();
  try {
    check_hello(msg);
    HelloPlan plan = plan_hello(hello);
    check_manifest(hello.run_id(), plan);
    check_hello_budget(hello.run_id(), plan);
    open_session(msg, plan, now);
    auto reply = wire::envelope();
    auto* w = reply.mutable_welcome();
    w->set_protocol_version(hello.protocol_version());
    w->set_server_id(options_.server_id);
    w->set_credit(options_.credit);
    w->set_max_chunk_bytes(options_.max_chunk_bytes);
    out.push_back({msg.peer, std::move(reply)});
  } catch (const ProtocolError& e) {
    spdlog::warn("peer {}: hello refused: {}", show_peer(msg.peer), e.what());
    out.push_back(error_to(msg.peer, e));
    if (!hello.run_id().empty() && !run_id_problem(hello.run_id())) forget_run_if_unused(hello.run_id());
  }
}

// The Hello itself: accepted now, a protocol version spoken here, a valid run id, a bounded
// manifest, and (with CURVE) the run's owner.
void MergerCore::check_hello(const wire::Message& msg) const {
  const auto& hello = msg.envelope.hello();
  if (!accepting_) throw ProtocolError(v1::SHUTTING_DOWN, "merger is shutting down");
  if (hello.protocol_version() != wire::kProtocolVersion && hello.protocol_version() != wire::kShardedProtocolVersion)
    throw ProtocolError(v1::VERSION_MISMATCH, "hello with protocol version " +
                                                  std::to_string(hello.protocol_version()) + ", merger speaks " +
                                                  std::to_string(wire::kProtocolVersion) + " and " +
                                                  std::to_string(wire::kShardedProtocolVersion));
  const std::string& run = hello.run_id();
  if (auto problem = run_id_problem(run)) throw ProtocolError(v1::BAD_REQUEST, "hello refused: " + *problem);
  if (hello.manifest_size() > kMaxHelloTensors)
    throw ProtocolError(v1::BAD_REQUEST, "hello refused: " + std::to_string(hello.manifest_size()) +
                                             " manifest entries, over the limit of " +
                                             std::to_string(kMaxHelloTensors) + " per hello");
  runs_.check_owner(run, msg.user_id);
}

// Its metadata (the run's, or none yet), its manifest (a sharded rank's slices become the
// manifest's tensors, sharded_group.h), and a checkpoint of it within the memory budget.
MergerCore::HelloPlan MergerCore::plan_hello(const v1::Hello& hello) const {
  const std::string& run = hello.run_id();
  HelloPlan plan;
  plan.metadata = metadata_from_hello(hello);  // BAD_REQUEST: a reserved key, over the limit
  const auto& entries = store_.entries(run);
  std::optional<const ModelMetadata*> window_metadata;
  if (!entries.empty()) window_metadata = entries.back()->model.get();
  runs_.check_metadata(run, plan.metadata.get(), window_metadata);  // MANIFEST_MISMATCH
  v1::Hello sliced;
  if (hello.protocol_version() == wire::kShardedProtocolVersion && hello.has_group()) {
    sliced = hello;
    plan.member = group_member_from_hello(sliced);
  }
  plan.manifest = manifest_from_hello(plan.member ? sliced : hello);
  for (const auto& t : *plan.manifest) plan.bytes += t.nbytes();  // cannot overflow: checked by manifest_from_hello
  if (plan.bytes > options_.store.memory_budget)
    throw ProtocolError(v1::OVER_BUDGET, "run '" + run + "': a checkpoint of " + std::to_string(plan.bytes) +
                                             " bytes does not fit --memory-budget " +
                                             std::to_string(options_.store.memory_budget));
  // What this Hello adds to the manifests in RAM: a new run's manifest, or a rank's own slices.
  plan.footprint = manifest_footprint(*plan.manifest) + (plan.member ? slices_footprint(*plan.member->entries) : 0);
  return plan;
}

// The manifest against the run's: a sharded rank declares its group; a single-client run's
// manifest is the one it started with (or the stored window's).
void MergerCore::check_manifest(const std::string& run, HelloPlan& plan) {
  if (plan.member) {
    if (auto problem = sharded_format_problem(options_.output, run))
      throw ProtocolError(v1::BAD_REQUEST, "hello refused: " + *problem);
    declare_group(run, *plan.member, plan.bytes);  // a sharded run: each rank its own blocks (sharded_group.h)
  } else if (groups_.is_group_run(run)) {
    throw ProtocolError(
        v1::BAD_REQUEST,
        "run '" + run + "' is a sharded run: a hello for it must declare its group (protocol version 2)");
  } else if (auto known = runs_.manifest(run)) {
    if (*known != *plan.manifest)
      throw ProtocolError(
          v1::MANIFEST_MISMATCH,
          "run '" + run + "': manifest differs from the one this run started with (names, dtypes, shapes)");
    plan.footprint = 0;  // shared with the run's other sessions
  } else {
    const auto& entries = store_.entries(run);
    if (!entries.empty() && entries.back()->tensors != *plan.manifest)
      throw ProtocolError(v1::MANIFEST_MISMATCH,
                          "run '" + run + "': manifest differs from the checkpoints in the stored window");
  }
}

// The manifests and metadata in RAM, with this Hello's, leave room for one of its checkpoints.
void MergerCore::check_hello_budget(const std::string& run, const HelloPlan& plan) const {
  const std::uint64_t new_metadata = runs_.has_metadata(run) || !plan.metadata ? 0 : metadata_bytes(*plan.metadata);
  if (runs_.bytes() + plan.footprint + new_metadata > options_.store.memory_budget - plan.bytes)
    throw ProtocolError(v1::OVER_BUDGET, "run '" + run + "': its manifest" + (plan.member ? " of slices" : "") +
                                             " and metadata (about " + std::to_string(plan.footprint + new_metadata) +
                                             " bytes in RAM) and one checkpoint do not fit --memory-budget " +
                                             std::to_string(options_.store.memory_budget) +
                                             " beside the manifests of " + std::to_string(sessions_.size()) +
                                             " sessions and " + std::to_string(runs_.manifests()) + " runs known (" +
                                             std::to_string(runs_.bytes()) + " bytes)");
}

// Registers the run's manifest, metadata and owner and the peer's session (replacing its previous
// one, or closing the longest idle session when the table is full).
void MergerCore::open_session(const wire::Message& msg, HelloPlan& plan, Clock::time_point now) {
  const std::string& run = msg.envelope.hello().run_id();
  const auto existing = sessions_.find(msg.peer);
  const std::string replaced = existing == sessions_.end() ? run : existing->second.run_id;
  if (existing == sessions_.end() && sessions_.full())
    session_closed(sessions_.make_room_for(msg.peer));
  else if (existing != sessions_.end())
    runs_.release(existing->second.footprint);  // replaced below
  if (plan.member)
    runs_.charge(plan.footprint);  // a sharded run's ranks each have their own blocks, counted per session
  else
    plan.manifest = runs_.adopt_manifest(run, plan.manifest);
  runs_.adopt_metadata(run, plan.metadata);
  runs_.adopt_owner(run, msg.user_id);
  Session s;
  s.run_id = run;
  s.manifest = plan.manifest;
  s.checkpoint_bytes = plan.bytes;
  s.outstanding = options_.credit;
  s.last_seen = now;
  s.group = plan.member;
  if (plan.member) s.footprint = plan.footprint;
  sessions_.open(msg.peer, std::move(s));
  if (replaced != run) forget_run_if_unused(replaced);  // this peer said hello for another run before
  spdlog::info("peer {} joined run '{}' ({} tensors, client '{}')", show_peer(msg.peer), run, plan.manifest->size(),
               msg.envelope.hello().client());
}

void MergerCore::on_begin(Session& s, const std::string& peer, const v1::CheckpointBegin& b, std::vector<Outgoing>& out) {
  if (s.partial) {
    spdlog::warn("peer {}: step {} restarted by step {}; dropping the partial one", show_peer(peer), s.partial->step(), b.step());
    s.partial.reset();
  }
  s.rejected_step.reset();
  try {
    if (!accepting_) throw ProtocolError(v1::SHUTTING_DOWN, "merger is shutting down");
    // A step the window holds is received whole all the same and compared at its end
    // (acknowledge_resend); a rank's part of a sharded step cannot be compared alone.
    if (s.group && store_.contains(s.run_id, b.step()))
      throw ProtocolError(v1::DUPLICATE_STEP, "run '" + s.run_id + "': step " + std::to_string(b.step()) + " already received");
    check_step_bounds(s.run_id, b.step());
    if (auto failed = failed_steps_.find({s.run_id, b.step()}); s.group && failed != failed_steps_.end())
      throw failed->second;
    take_over_partials(s.run_id, b.step(), peer, out);
    if (!s.group) check_memory_budget(s);
    if (b.step() <= store_.newest_step(s.run_id) && !store_.contains(s.run_id, b.step()))
      throw ProtocolError(v1::OUT_OF_ORDER, "run '" + s.run_id + "': step " + std::to_string(b.step()) +
                                                " is older than the newest in the window (" +
                                                std::to_string(store_.newest_step(s.run_id)) + ")");
    if (s.group) admit_group_step(s, b.step(), s.last_seen);  // the node's parts of a step fit together or not at all
    s.partial = std::make_unique<CheckpointAssembler>(s.run_id, s.manifest, b);
    store_.poll();  // spills what the new partial needs room for
  } catch (const ProtocolError& e) {
    reject(s, peer, b.step(), e, out);
  }
}

void MergerCore::check_step_bounds(const std::string& run_id, std::int64_t step) const {
  if (step < 0) throw ProtocolError(v1::BAD_REQUEST, "run '" + run_id + "': negative step " + std::to_string(step));
  // A step far past the newest would block the run: every honest step after it is out of order.
  const std::int64_t newest = std::max<std::int64_t>(store_.newest_step(run_id), 0);
  if (step - newest > kMaxStepJump)
    throw ProtocolError(v1::BAD_REQUEST, "run '" + run_id + "': step " + std::to_string(step) + " is more than " +
                                             std::to_string(kMaxStepJump) + " past the newest step (" +
                                             std::to_string(newest) + ")");
}

void MergerCore::check_memory_budget(const Session& s) const {
  // Partial checkpoints are held whole until they end, so each counts from its Begin; so do the
  // running sums and the window's RAM copies that cannot spill (all of them without a store).
  const std::uint64_t held = held_bytes();
  const auto budget = options_.store.memory_budget;
  if (held > budget || s.checkpoint_bytes > budget - held)
    throw ProtocolError(v1::OVER_BUDGET, "run '" + s.run_id + "': " + std::to_string(held) + " bytes held (" +
                                             (options_.store.store_dir.empty() ? "window, " : "window not yet stored, ") +
                                             "running sums, manifests and checkpoints being received) plus this checkpoint's " +
                                             std::to_string(s.checkpoint_bytes) + " exceed --memory-budget " +
                                             std::to_string(budget) + "; try again later");
}

std::uint64_t MergerCore::held_bytes() const {
  return store_.pinned_bytes() + running_sum_bytes() + partial_bytes() + runs_.bytes();
}

std::uint64_t MergerCore::partial_bytes() const {
  std::uint64_t held = 0;
  for (const auto& [peer, session] : sessions_)
    if (session.partial && !session.group) held += session.checkpoint_bytes;
  return held + groups_.held_bytes();  // sharded runs' steps: room for all their local ranks' parts
}

void MergerCore::take_over_partials(const std::string& run_id, std::int64_t step, const std::string& peer,
                                    std::vector<Outgoing>& out) {
  // A client that gave up on a stalled socket resends from a new one while the old socket's
  // partial is still here: the new session takes the step over (the old partial would only expire,
  // and answering DUPLICATE_STEP would make the client count a lost checkpoint as delivered).
  const auto& group = sessions_.at(peer).group;
  for (auto& [other_peer, other] : sessions_)
    if (other_peer != peer && other.run_id == run_id && other.partial && other.partial->step() == step &&
        (!group || (other.group && other.group->rank == group->rank)))  // other ranks send the same step
      reject(other, other_peer, step,
             ProtocolError(v1::TAKEN_OVER, "run '" + run_id + "': step " + std::to_string(step) +
                                               " is being resent by another session of this run; this partial is dropped"),
             out);
}

void MergerCore::on_chunk(Session& s, wire::Message& msg, std::vector<Outgoing>& out) {
  const auto& chunk = msg.envelope.chunk();
  stats_.note_bytes(s.last_seen, msg.payload_bytes().size());
  // Credit returns once a chunk is taken out of ZeroMQ's queue, so what a sender has in flight
  // (queued here, unprocessed) never exceeds the credit it was granted.
  if (s.outstanding > 0) --s.outstanding;
  ++s.consumed;
  grant(s, msg.peer, out, false);
  if (s.rejected_step && *s.rejected_step == chunk.step()) return;
  try {
    if (!s.partial || s.partial->step() != chunk.step())
      throw ProtocolError(v1::OUT_OF_ORDER, "chunk for step " + std::to_string(chunk.step()) + " without its begin");
    if (chunk.length() > options_.max_chunk_bytes)
      throw ProtocolError(v1::BAD_REQUEST, "chunk of " + std::to_string(chunk.length()) + " bytes exceeds max_chunk_bytes " +
                                               std::to_string(options_.max_chunk_bytes));
    s.partial->add(chunk, std::move(*msg.payload));
    if (s.group) groups_.touch(s.run_id, chunk.step(), s.last_seen);
  } catch (const ProtocolError& e) {
    reject(s, msg.peer, chunk.step(), e, out);
  }
}

void MergerCore::on_end(Session& s, const std::string& peer, const v1::CheckpointEnd& e, std::vector<Outgoing>& out) {
  grant(s, peer, out, true);
  if (s.rejected_step && *s.rejected_step == e.step()) return;
  try {
    if (!s.partial || s.partial->step() != e.step())
      throw ProtocolError(v1::OUT_OF_ORDER, "end of step " + std::to_string(e.step()) + " without its begin");
    auto c = s.partial->finish(e);
    s.partial.reset();
    if (!s.group && store_.contains(s.run_id, c->step)) {
      acknowledge_resend(s, peer, *c, out);
      return;
    }
    if (s.group) return deliver_part(s, peer, std::move(c), e, out);
    commit(s.run_id, std::move(c), {peer}, out);
  } catch (const ProtocolError& err) {
    reject(s, peer, e.step(), err, out);
  }
}

void MergerCore::commit(const std::string& run_id, std::shared_ptr<StoredCheckpoint> c,
                        const std::vector<std::string>& peers, std::vector<Outgoing>& out) {
  if (runs_.has_metadata(run_id)) c->model = runs_.metadata(run_id);  // into its outputs and --store file
  std::vector<Entry> dropped;
  try {
    dropped = store_.add(c);
  } catch (const Error& err) {
    throw ProtocolError(v1::INTERNAL, err.what());
  }
  stats_.note_checkpoint(Clock::now());
  spdlog::info("received run '{}' step {} (tokens {}, lr {:g}, {} bytes) from {}{}", run_id, c->step, c->tokens, c->lr,
               c->nbytes(), show_peer(peers.front()), peers.size() > 1 ? " and " + std::to_string(peers.size() - 1) + " more ranks" : "");
  for (const auto& peer : peers) {
    auto ack = wire::envelope();
    ack.mutable_ack()->set_step(c->step);
    out.push_back({peer, std::move(ack)});
  }
  try {
    after_commit(run_id, c->step, dropped);
  } catch (const std::exception& err) {  // the checkpoint is in the window; only its output is lost
    spdlog::error("run '{}' step {}: output not planned: {}", run_id, c->step, err.what());
  }
}

void MergerCore::acknowledge_resend(const Session& s, const std::string& peer, const StoredCheckpoint& c,
                                    std::vector<Outgoing>& out) {
  // Identical bytes: a resumed run or a lost Ack, so a delivery. Anything else is a conflict;
  // DUPLICATE_STEP keeps the words "already received" that clients match.
  const auto& entries = store_.entries(s.run_id);
  const auto held = std::find_if(entries.begin(), entries.end(), [&](const Entry& e) { return e->step == c.step; });
  std::optional<std::string> diff;
  try {
    diff = first_difference(c, *held);
  } catch (const Error& err) {
    diff = std::string("its stored copy cannot be read: ") + err.what();
  }
  if (diff)
    throw ProtocolError(v1::DUPLICATE_STEP, "run '" + s.run_id + "': step " + std::to_string(c.step) +
                                                " already received, with different contents (" + *diff + ")");
  spdlog::info("run '{}' step {} sent again with the same contents: acknowledged", s.run_id, c.step);
  auto ack = wire::envelope();
  ack.mutable_ack()->set_step(c.step);
  out.push_back({peer, std::move(ack)});
}

void MergerCore::after_commit(const std::string& run_id, std::int64_t step, const std::vector<Entry>& dropped) {
  const std::int64_t previous = runs_.advance(run_id, step);
  const bool due = emission_due(previous, step, options_.every);
  if (!due && !options_.running_sums) return;
  auto job = plan_emission(store_, run_id, options_.emulations, options_.out_dir, options_.dtype);
  apply_output_format(job, options_.output);
  if (due)
    for (const auto& why : job.skipped) spdlog::warn("run '{}' step {}: output skipped: {}", run_id, step, why);
  if (due && job.outputs.empty()) {
    spdlog::info("run '{}' step {}: output due, but no window is covered yet", run_id, step);
    return;
  }
  // Running sums are brought up to date at every checkpoint (on the worker), so each update
  // reads only what entered or left the window; outputs are written only when due.
  if (options_.running_sums) split_running_sums(job, due, store_.entries(run_id), dropped);
  if (job.outputs.empty() && job.sums.empty()) return;
  if (sink_) sink_(std::move(job));
}

std::vector<Outgoing> MergerCore::pump() {
  std::vector<Outgoing> out;
  take_combined(out);
  store_.poll();
  if (!withholding_ || store_.backlogged()) return out;
  withholding_ = false;
  spdlog::info("store writer caught up: granting credit again");
  for (auto& [peer, s] : sessions_) grant(s, peer, out, true);
  return out;
}

void MergerCore::on_merge_request(const wire::Message& msg, std::vector<Outgoing>& out) {
  const auto& peer = msg.peer;
  const auto& r = msg.envelope.merge_request();
  try {
    submit_merge_request(msg);
  } catch (const ProtocolError& err) {
    out.push_back(error_to(peer, err, 0, r.request_id()));
  } catch (const Error& err) {
    out.push_back(error_to(peer, ProtocolError(v1::BAD_REQUEST, std::string("merge request: ") + err.what()), 0, r.request_id()));
  }
}

void MergerCore::submit_merge_request(const wire::Message& msg) {
  const auto& peer = msg.peer;
  const auto& r = msg.envelope.merge_request();
  if (!accepting_) throw ProtocolError(v1::SHUTTING_DOWN, "merger is shutting down");
  if (auto problem = run_id_problem(r.run_id())) throw ProtocolError(v1::BAD_REQUEST, "merge request: " + *problem);
  runs_.check_owner(r.run_id(), msg.user_id);
  requests_.check_room(peer);
  Emulation e;
  std::optional<DType> dtype = options_.dtype;
  try {
    e = make_emulation(parse_merge_spec(r.shape()), parse_window(r.window()));
    if (!r.dtype().empty()) {
      dtype = parse_dtype(r.dtype());
      if (!dtype || !is_float(*dtype)) throw Error("merge request: dtype '" + r.dtype() + "' is not f32/f16/bf16/f64");
    }
  } catch (const Error& err) {
    throw ProtocolError(v1::BAD_REQUEST, err.what());
  }
  if (store_.entries(r.run_id()).empty())
    throw ProtocolError(v1::BAD_REQUEST, "merge request: run '" + r.run_id() + "' has no checkpoints in the window");
  e.label = "request-" + std::to_string(r.request_id()) + "_" + e.label;
  auto job = plan_emission(store_, r.run_id(), {e}, options_.out_dir, dtype, false);
  apply_output_format(job, options_.output);
  if (job.outputs.empty())
    throw ProtocolError(v1::BAD_REQUEST, "merge request for run '" + r.run_id() + "': " +
                                             (job.skipped.empty() ? "nothing to merge" : job.skipped.front()));
  job.request_id = r.request_id() ? r.request_id() : 1;
  job.requester = peer;
  requests_.add(peer);
  if (sink_) sink_(std::move(job));
}

std::vector<Outgoing> MergerCore::job_done(const EmissionJob& job, const std::vector<OutputRecord>& records,
                                           const std::string& error) {
  stats_.note_outputs(records.size());
  std::vector<Outgoing> out;
  append(out, feed_.add(records));
  if (job.request_id == 0 || job.requester.empty()) return out;
  requests_.done(job.requester);
  if (!error.empty()) {
    out.push_back(error_to(job.requester, ProtocolError(v1::INTERNAL, error), 0, job.request_id));
    return out;
  }
  auto reply = wire::envelope();
  auto* r = reply.mutable_merge_reply();
  r->set_request_id(job.request_id);
  if (!job.outputs.empty()) {
    r->set_path(job.outputs.front().path.string());
    for (auto s : job.outputs.front().source_steps) r->add_source_steps(s);
    for (auto w : job.outputs.front().source_weights) r->add_weights(w);
  }
  out.push_back({job.requester, std::move(reply)});
  return out;
}

void MergerCore::reject(Session& s, const std::string& peer, std::int64_t step, const ProtocolError& e,
                        std::vector<Outgoing>& out) {
  spdlog::warn("run '{}' step {} from {} rejected: {}", s.run_id, step, show_peer(peer), e.what());
  stats_.note_rejected();
  s.partial.reset();
  s.rejected_step = step;
  out.push_back(error_to(peer, e, step));
}

void MergerCore::grant(Session& s, const std::string& peer, std::vector<Outgoing>& out, bool force) {
  // Credit comes back in batches of a quarter of the window (and at every checkpoint end).
  const std::uint32_t batch = std::max<std::uint32_t>(1, options_.credit / 4);
  if (s.consumed == 0 || (!force && s.consumed < batch)) return;
  if (store_.backlogged()) {  // the disk is behind: the sender waits, memory stays bounded
    if (!withholding_)
      spdlog::warn("store writer {} bytes behind (limit {}): withholding credit", store_.write_backlog_bytes(),
                   options_.store.write_backlog);
    withholding_ = true;
    return;
  }
  auto env = wire::envelope();
  env.mutable_credit()->set_grant(s.consumed);
  s.outstanding += s.consumed;
  s.consumed = 0;
  out.push_back({peer, std::move(env)});
}

std::vector<Outgoing> MergerCore::expire(Clock::time_point now) {
  std::vector<Outgoing> out;
  append(out, feed_.expire(now));
  for (auto& outcome : groups_.expire(now, options_.partial_timeout)) finish_group_step(std::move(outcome), out);
  group_heartbeats(now, out);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto& s = it->second;
    if (s.partial && now - s.last_seen > options_.partial_timeout) {
      const auto step = s.partial->step();
      reject(s, it->first, step, ProtocolError(v1::TIMEOUT, "run '" + s.run_id + "' step " + std::to_string(step) +
                                                                ": sender silent, partial checkpoint discarded"),
             out);
    }
    // Sessions idle for long (and without a partial) are forgotten; a returning client says hello again.
    if (!s.partial && now - s.last_seen > std::max(options_.partial_timeout * 10, std::chrono::milliseconds(600000)))
      end_session(it++);
    else
      ++it;
  }
  return out;
}

void MergerCore::end_session(SessionTable::iterator it) { session_closed(sessions_.close(it)); }

void MergerCore::session_closed(const Session& s) {
  runs_.release(s.footprint);
  forget_run_if_unused(s.run_id);
}

void MergerCore::forget_run_if_unused(const std::string& run) {
  // A run with neither a session nor a checkpoint in the window keeps nothing (run_registry.h); a
  // sharded run's world sizes go once no rank is connected and no step is pending (a resumed job
  // may have others).
  const bool sessions = sessions_.serves(run);
  if (!sessions) groups_.forget_if_idle(run);
  runs_.forget_if_unused(run, {.sessions = sessions, .window = !store_.entries(run).empty()});
}

v1::StatusReply MergerCore::status(Clock::time_point now) const {
  v1::StatusReply r;
  r.set_server_id(options_.server_id);
  r.set_version(std::string(wsm_version()));
  r.set_uptime_s(std::chrono::duration<double>(now - started_).count());
  for (const auto& run : store_.runs())
    for (const auto& c : store_.entries(run)) {
      auto* w = r.add_window();
      w->set_run_id(run);
      w->set_step(c->step);
      w->set_tokens(c->tokens);
      w->set_bytes(c->nbytes());
      w->set_in_memory(c->in_memory());
      w->set_on_disk(c->lease && c->lease->persisted);  // renamed into place, not merely queued
    }
  if (hooks_.pending)
    for (auto& p : hooks_.pending()) *r.add_pending() = std::move(p);
  for (const auto& e : options_.emulations) {
    auto* em = r.add_emulations();
    em->set_spec(e.spec.to_string());
    em->set_window(e.window);
    em->set_axis(std::string(axis_name(e.axis)));
    em->set_label(e.label);
  }
  r.set_bytes_received(stats_.bytes_received());
  r.set_checkpoints_received(stats_.checkpoints_received());
  r.set_checkpoints_rejected(stats_.checkpoints_rejected());
  r.set_outputs_written(stats_.outputs_written());
  r.set_bytes_per_s(stats_.bytes_per_s(now));
  r.set_checkpoints_per_min(stats_.checkpoints_per_min(now));
  r.set_peers(static_cast<std::uint32_t>(sessions_.size()));
  r.set_memory_bytes(store_.memory_bytes());
  r.set_memory_budget(options_.store.memory_budget);
  r.set_every(options_.every);
  r.set_running_sums(options_.running_sums);
  r.set_running_sum_bytes(running_sum_bytes());
  r.set_store_backlog_bytes(store_.write_backlog_bytes());
  if (hooks_.status_extra) hooks_.status_extra(r);
  return r;
}

}  // namespace wsm::merger
