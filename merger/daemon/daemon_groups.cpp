// MergerCore's handling of sharded runs (protocol version 2): ranks' Hellos, their verified parts,
// and each step's outcome (complete: into the window, every rank acked; failed: every rank told,
// nothing in the window). The collecting and the checks are group_collector.h and sharded_group.h.
#include <set>

#include <spdlog/spdlog.h>

#include "merger/daemon/daemon_core.h"

namespace wsm::merger {

using wire::ProtocolError;

namespace {
constexpr auto kHeartbeat = std::chrono::seconds(1);  // Delivered repeated while a rank waits
constexpr std::size_t kFailedStepsKept = 256;

Outgoing delivered_to(const GroupCollector::Waiting& w) {
  auto env = wire::envelope();
  auto* d = env.mutable_delivered();
  d->set_step(w.step);
  d->set_ranks_delivered(w.delivered);
  d->set_ranks_expected(w.expected);
  return {w.peer, std::move(env)};
}
}  // namespace

void MergerCore::declare_group(const std::string& run, const GroupMember& member, std::uint64_t bytes) {
  if (runs_.manifest(run))
    throw ProtocolError(v1::BAD_REQUEST, "run '" + run + "' is a single-client run: its hellos cannot declare a group");
  if (auto error = groups_.declare(run, member)) throw *error;
  // Every local rank's part of a step is held until the last arrives: once all of them said
  // Hello, a node whose parts together exceed the budget is told so at once (each rank's part
  // alone may fit, and every step would otherwise wait for parts that cannot be taken).
  std::set<int> ranks{member.rank};
  for (const auto& [peer, s] : sessions_)
    if (s.run_id == run && s.group) ranks.insert(s.group->rank);
  const auto node = node_step_bytes(run, member, bytes);
  if (ranks.size() >= static_cast<std::size_t>(member.local_world_size) && node > options_.store.memory_budget)
    throw ProtocolError(v1::OVER_BUDGET, "run '" + run + "': its " + std::to_string(member.local_world_size) +
                                             " local ranks send " + std::to_string(node) +
                                             " bytes per step together, more than --memory-budget " +
                                             std::to_string(options_.store.memory_budget) +
                                             " (a step's parts are held until all arrive)");
}

std::uint64_t MergerCore::node_step_bytes(const std::string& run, const GroupMember& asking, std::uint64_t bytes) const {
  // Per local rank its part's bytes (the asking rank's from its Hello); a rank not connected yet
  // counts as the largest part.
  std::map<int, std::uint64_t> parts{{asking.rank, bytes}};
  for (const auto& [peer, s] : sessions_)
    if (s.run_id == run && s.group && s.group->rank != asking.rank)
      parts[s.group->rank] = std::max(parts[s.group->rank], s.checkpoint_bytes);
  std::uint64_t sum = 0, largest = 0;
  for (const auto& [rank, b] : parts) {
    sum += b;
    largest = std::max(largest, b);
  }
  const auto local = static_cast<std::size_t>(asking.local_world_size);
  return sum + (parts.size() < local ? (local - parts.size()) * largest : 0);
}

void MergerCore::admit_group_step(const Session& s, std::int64_t step, Clock::time_point now) {
  if (groups_.admitted(s.run_id, step)) return;  // room reserved at the first rank's Begin
  const std::uint64_t node = node_step_bytes(s.run_id, *s.group, s.checkpoint_bytes);
  const std::uint64_t held = held_bytes();
  const auto budget = options_.store.memory_budget;
  if (held > budget || node > budget - held)
    throw ProtocolError(v1::OVER_BUDGET, "run '" + s.run_id + "' step " + std::to_string(step) + ": its " +
                                             std::to_string(s.group->local_world_size) + " local ranks' parts (" +
                                             std::to_string(node) + " bytes together) and the " + std::to_string(held) +
                                             " bytes held exceed --memory-budget " + std::to_string(budget) +
                                             "; the step is taken whole or not at all: try again later");
  groups_.admit(s.run_id, step, node, now);
}

void MergerCore::deliver_part(Session& s, const std::string& peer, std::shared_ptr<StoredCheckpoint> part,
                              const v1::CheckpointEnd& e, std::vector<Outgoing>& out) {
  const auto step = part->step;
  auto delivery = groups_.deliver(s.run_id, RankPart{peer, *s.group, std::move(part), e.total_bytes(), e.checksum()},
                                  s.last_seen);
  if (delivery.outcome) return finish_group_step(std::move(*delivery.outcome), out);
  if (delivery.combine) {
    spdlog::info("run '{}' step {}: all {} local ranks delivered; combining", s.run_id, step, delivery.combine->parts.size());
    combiner_.post(std::move(*delivery.combine));
    take_combined(out);  // done already when the combiner runs inline
  } else {
    spdlog::info("run '{}' step {}: rank {} delivered; waiting for the other local ranks", s.run_id, step, s.group->rank);
  }
  for (const auto& w : groups_.waiting())
    if (w.peer == peer) out.push_back(delivered_to(w));
}

void MergerCore::take_combined(std::vector<Outgoing>& out) {
  for (auto& r : combiner_.take())
    if (auto outcome = groups_.combined(r.job, std::move(r.node), std::move(r.error))) finish_group_step(std::move(*outcome), out);
}

void MergerCore::finish_group_step(GroupOutcome outcome, std::vector<Outgoing>& out) {
  if (!outcome.error && outcome.complete) {
    const auto& entries = store_.entries(outcome.run_id);
    const auto& c = *outcome.complete;
    if (!entries.empty() && (entries.back()->tensors != c.tensors || !entries.back()->part || *entries.back()->part != *c.part))
      outcome.error = ProtocolError(v1::SLICE_MISMATCH, "run '" + outcome.run_id + "' step " + std::to_string(c.step) +
                                                            ": this node's ranks or slices differ from the checkpoints in "
                                                            "the run's window");
    else
      try {
        commit(outcome.run_id, std::move(outcome.complete), outcome.peers, out);
        forget_run_if_unused(outcome.run_id);
        return;
      } catch (const ProtocolError& e) {
        outcome.error = e;
      }
  }
  const auto& error = *outcome.error;
  spdlog::warn("run '{}' step {} rejected for its {} senders: {}", outcome.run_id, outcome.step, outcome.peers.size(), error.what());
  stats_.note_rejected();
  for (const auto& peer : outcome.peers) out.push_back({peer, wire::error_envelope(error.code(), error.what(), outcome.step)});
  // Local ranks still sending this step hear it now, and later ones at their Begin.
  for (auto& [peer, s] : sessions_)
    if (s.run_id == outcome.run_id && s.partial && s.partial->step() == outcome.step) reject(s, peer, outcome.step, error, out);
  failed_steps_.insert_or_assign({outcome.run_id, outcome.step}, error);
  if (failed_steps_.size() > kFailedStepsKept) failed_steps_.erase(failed_steps_.begin());
  forget_run_if_unused(outcome.run_id);  // its ranks may all have left while it was pending
}

void MergerCore::group_heartbeats(Clock::time_point now, std::vector<Outgoing>& out) {
  if (now - last_heartbeat_ < kHeartbeat) return;
  last_heartbeat_ = now;
  for (const auto& w : groups_.waiting()) out.push_back(delivered_to(w));
}

}  // namespace wsm::merger
