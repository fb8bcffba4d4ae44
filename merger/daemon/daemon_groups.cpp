// MergerCore's handling of sharded runs (protocol version 2): ranks' Hellos, their verified parts,
// and each step's outcome (complete: into the window, every rank acked; failed: every rank told,
// nothing in the window). The collecting and the checks are group_collector.h and sharded_group.h.
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

void MergerCore::declare_group(const std::string& run, const GroupMember& member, std::vector<Outgoing>& out) {
  if (run_manifests_.contains(run))
    throw ProtocolError(v1::BAD_REQUEST, "run '" + run + "' is a single-client run: its hellos cannot declare a group");
  std::vector<GroupOutcome> failed;
  auto error = groups_.declare(run, member, failed);
  for (auto& f : failed) finish_group_step(std::move(f), out);
  if (error) throw *error;
}

void MergerCore::deliver_part(Session& s, const std::string& peer, std::shared_ptr<StoredCheckpoint> part,
                              const v1::CheckpointEnd& e, std::vector<Outgoing>& out) {
  const auto step = part->step;
  auto outcome = groups_.deliver(s.run_id, RankPart{peer, *s.group, std::move(part), e.total_bytes(), e.checksum()},
                                 s.last_seen);
  if (outcome) return finish_group_step(std::move(*outcome), out);
  spdlog::info("run '{}' step {}: rank {} delivered; waiting for the other local ranks", s.run_id, step, s.group->rank);
  for (const auto& w : groups_.waiting())
    if (w.peer == peer) out.push_back(delivered_to(w));
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
        return commit(outcome.run_id, std::move(outcome.complete), outcome.peers, out);
      } catch (const ProtocolError& e) {
        outcome.error = e;
      }
  }
  const auto& error = *outcome.error;
  spdlog::warn("run '{}' step {} rejected for its {} senders: {}", outcome.run_id, outcome.step, outcome.peers.size(), error.what());
  ++checkpoints_rejected_;
  for (const auto& peer : outcome.peers) out.push_back({peer, wire::error_envelope(error.code(), error.what(), outcome.step)});
  // Local ranks still sending this step hear it now, and later ones at their Begin.
  for (auto& [peer, s] : sessions_)
    if (s.run_id == outcome.run_id && s.partial && s.partial->step() == outcome.step) reject(s, peer, outcome.step, error, out);
  failed_steps_.insert_or_assign({outcome.run_id, outcome.step}, error);
  if (failed_steps_.size() > kFailedStepsKept) failed_steps_.erase(failed_steps_.begin());
}

void MergerCore::group_heartbeats(Clock::time_point now, std::vector<Outgoing>& out) {
  if (now - last_heartbeat_ < kHeartbeat) return;
  last_heartbeat_ = now;
  for (const auto& w : groups_.waiting()) out.push_back(delivered_to(w));
}

}  // namespace wsm::merger
