#include "merger/daemon/group_collector.h"

#include <algorithm>

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
  return s.empty() ? "none" : s;
}
}  // namespace

std::optional<ProtocolError> GroupCollector::declare(const std::string& run_id, const GroupMember& m) {
  auto [it, fresh] = runs_.try_emplace(run_id);
  Run& run = it->second;
  if (fresh) {
    run.world_size = m.world_size;
    run.local_world_size = m.local_world_size;
  }
  if (run.world_size != m.world_size || run.local_world_size != m.local_world_size)
    return ProtocolError(v1::BAD_REQUEST, "run '" + run_id + "': rank " + std::to_string(m.rank) + " says world size " +
                                              std::to_string(m.world_size) + " (local " + std::to_string(m.local_world_size) +
                                              "), the run has " + std::to_string(run.world_size) + " (local " +
                                              std::to_string(run.local_world_size) +
                                              ") while its ranks are connected; the world size cannot change mid-run");
  return std::nullopt;
}

int GroupCollector::local_world_size(const std::string& run_id) const {
  const auto it = runs_.find(run_id);
  return it == runs_.end() ? 0 : it->second.local_world_size;
}

void GroupCollector::admit(const std::string& run_id, std::int64_t step, std::uint64_t node_bytes, Clock::time_point now) {
  auto [it, fresh] = pending_.try_emplace({run_id, step});
  if (!fresh) return;
  it->second.last_activity = now;
  it->second.expected = local_world_size(run_id);
  it->second.reserved = node_bytes;
}

GroupCollector::Delivery GroupCollector::deliver(const std::string& run_id, RankPart part, Clock::time_point now) {
  const std::int64_t step = part.part->step;
  const int rank = part.member.rank;
  auto [it, fresh] = pending_.try_emplace({run_id, step});
  Pending& p = it->second;
  if (fresh) p.expected = part.member.local_world_size;
  p.last_activity = now;
  if (auto old = p.parts.find(rank); old != p.parts.end()) {
    if (old->second.total_bytes != part.total_bytes || old->second.checksum != part.checksum) {
      const bool other_peer = part.peer != old->second.peer;  // read before fail() frees `old`
      auto failed = fail(it, ProtocolError(v1::SLICE_MISMATCH, "run '" + run_id + "' step " + std::to_string(step) +
                                                                   ": rank " + std::to_string(rank) +
                                                                   " sent this step twice with different contents"));
      if (other_peer) failed.peers.push_back(part.peer);
      return {std::move(failed), std::nullopt};
    }
    spdlog::info("run '{}' step {}: rank {} resent its part (same bytes)", run_id, step, rank);
  }
  p.parts.insert_or_assign(rank, std::move(part));
  if (p.combining || p.parts.size() < static_cast<std::size_t>(p.expected)) return {};
  Combination c{run_id, step, next_id_++, {}};
  for (const auto& [r, rp] : p.parts) c.parts.push_back(rp);  // shares the bytes
  p.combining = c.id;
  return {std::nullopt, std::move(c)};
}

std::optional<GroupOutcome> GroupCollector::combined(const Combination& c, std::shared_ptr<StoredCheckpoint> node,
                                                     std::optional<ProtocolError> error) {
  auto it = pending_.find({c.run_id, c.step});
  if (it == pending_.end() || it->second.combining != c.id) return std::nullopt;  // failed meanwhile
  if (error) return fail(it, std::move(*error));
  GroupOutcome done{c.run_id, c.step, {}, std::move(node), std::nullopt};
  for (const auto& [r, rp] : it->second.parts) done.peers.push_back(rp.peer);  // resends meanwhile: the newest peer
  pending_.erase(it);
  return done;
}

GroupOutcome GroupCollector::fail(PendingMap::iterator it, ProtocolError error) {
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
    if (!it->second.combining && now - it->second.last_activity > timeout) {
      const auto& parts = it->second.parts;
      const int expected = it->second.expected;
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
      out.push_back({rp.peer, key.second, static_cast<std::uint32_t>(p.parts.size()), static_cast<std::uint32_t>(p.expected)});
  return out;
}

void GroupCollector::forget_if_idle(const std::string& run_id) {
  const auto first = pending_.lower_bound({run_id, INT64_MIN});
  if (first != pending_.end() && first->first.first == run_id) return;
  runs_.erase(run_id);
}

std::uint64_t GroupCollector::held_bytes() const {
  std::uint64_t n = 0;
  for (const auto& [key, p] : pending_) {
    std::uint64_t parts = 0;
    for (const auto& [r, rp] : p.parts) parts += rp.part->nbytes();
    n += std::max(p.reserved, parts);
  }
  return n;
}

}  // namespace wsm::merger
