#include "merger/daemon/group_collector.h"

#include <spdlog/spdlog.h>

namespace wsm::merger {

using wire::ProtocolError;

namespace {
std::string rank_list(const std::map<int, RankPart>& parts) {
  std::string s;
  for (const auto& [rank, part] : parts) {
    if (!s.empty()) s += ',';
    s += std::to_string(rank);
  }
  return s;
}
}  // namespace

std::optional<ProtocolError> GroupCollector::declare(const std::string& run_id, const GroupMember& m,
                                                     std::vector<GroupOutcome>& failed) {
  auto [it, fresh] = runs_.try_emplace(run_id);
  Run& run = it->second;
  if (fresh) {
    run.world_size = m.world_size;
    run.local_world_size = m.local_world_size;
  }
  if (run.world_size != m.world_size || run.local_world_size != m.local_world_size) {
    ProtocolError e(v1::BAD_REQUEST, "run '" + run_id + "': rank " + std::to_string(m.rank) + " says world size " +
                                         std::to_string(m.world_size) + " (local " + std::to_string(m.local_world_size) +
                                         "), the run has " + std::to_string(run.world_size) + " (local " +
                                         std::to_string(run.local_world_size) + "); the world size cannot change mid-run");
    for (auto p = pending_.begin(); p != pending_.end();) {
      auto next = std::next(p);
      if (p->first.first == run_id) failed.push_back(fail(p, e));
      p = next;
    }
    return e;
  }
  return std::nullopt;
}

std::optional<GroupOutcome> GroupCollector::deliver(const std::string& run_id, RankPart part, Clock::time_point now) {
  const std::int64_t step = part.part->step;
  const int rank = part.member.rank;
  auto it = pending_.try_emplace({run_id, step}).first;
  Pending& p = it->second;
  p.last_activity = now;
  if (auto old = p.parts.find(rank); old != p.parts.end()) {
    if (old->second.total_bytes != part.total_bytes || old->second.checksum != part.checksum) {
      const bool other_peer = part.peer != old->second.peer;  // read before fail() frees `old`
      auto failed = fail(it, ProtocolError(v1::SLICE_MISMATCH, "run '" + run_id + "' step " + std::to_string(step) +
                                                                   ": rank " + std::to_string(rank) +
                                                                   " sent this step twice with different contents"));
      if (other_peer) failed.peers.push_back(part.peer);
      return failed;
    }
    spdlog::info("run '{}' step {}: rank {} resent its part (same bytes)", run_id, step, rank);
  }
  p.parts.insert_or_assign(rank, std::move(part));
  const auto expected = static_cast<std::size_t>(p.parts.begin()->second.member.local_world_size);
  if (p.parts.size() < expected) return std::nullopt;
  std::vector<const RankPart*> parts;
  for (const auto& [r, rp] : p.parts) parts.push_back(&rp);
  try {
    auto node = combine_parts(run_id, parts);
    GroupOutcome done{run_id, step, {}, std::move(node), std::nullopt};
    for (const auto& [r, rp] : p.parts) done.peers.push_back(rp.peer);
    pending_.erase(it);
    return done;
  } catch (const ProtocolError& e) {
    return fail(it, e);
  }
}

GroupOutcome GroupCollector::fail(std::map<std::pair<std::string, std::int64_t>, Pending>::iterator it, ProtocolError error) {
  GroupOutcome out{it->first.first, it->first.second, {}, nullptr, std::move(error)};
  for (const auto& [r, rp] : it->second.parts) out.peers.push_back(rp.peer);
  pending_.erase(it);
  return out;
}

void GroupCollector::touch(const std::string& run_id, std::int64_t step, Clock::time_point now) {
  if (auto it = pending_.find({run_id, step}); it != pending_.end()) it->second.last_activity = now;
}

std::vector<GroupOutcome> GroupCollector::expire(Clock::time_point now, std::chrono::milliseconds timeout) {
  std::vector<GroupOutcome> out;
  for (auto it = pending_.begin(); it != pending_.end();) {
    auto next = std::next(it);
    if (now - it->second.last_activity > timeout) {
      const auto& parts = it->second.parts;
      const auto expected = parts.begin()->second.member.local_world_size;
      const auto missing = expected - static_cast<int>(parts.size());
      out.push_back(fail(it, ProtocolError(v1::GROUP_INCOMPLETE,
                                           "run '" + it->first.first + "' step " + std::to_string(it->first.second) +
                                               ": ranks " + rank_list(parts) + " delivered, " + std::to_string(missing) +
                                               " of the " + std::to_string(expected) +
                                               " local ranks did not within the timeout (a rank died?); step discarded")));
    }
    it = next;
  }
  return out;
}

std::vector<GroupCollector::Waiting> GroupCollector::waiting() const {
  std::vector<Waiting> out;
  for (const auto& [key, p] : pending_)
    for (const auto& [r, rp] : p.parts)
      out.push_back({rp.peer, key.second, static_cast<std::uint32_t>(p.parts.size()),
                     static_cast<std::uint32_t>(rp.member.local_world_size)});
  return out;
}

std::uint64_t GroupCollector::held_bytes() const {
  std::uint64_t n = 0;
  for (const auto& [key, p] : pending_)
    for (const auto& [r, rp] : p.parts) n += rp.part->nbytes();
  return n;
}

}  // namespace wsm::merger
