#include "merger/daemon/session_table.h"

#include <cstdio>

#include <spdlog/spdlog.h>

#include "wsm/wire/wire.h"

namespace wsm::merger {

std::string show_peer(const std::string& peer) {
  std::string out;
  for (unsigned char c : peer) {
    char b[3];
    std::snprintf(b, sizeof b, "%02x", c);
    out += b;
  }
  return out;
}

bool SessionTable::serves(const std::string& run) const {
  for (const auto& [peer, s] : sessions_)
    if (s.run_id == run) return true;
  return false;
}

Session& SessionTable::open(const std::string& peer, Session session) { return sessions_[peer] = std::move(session); }

Session SessionTable::make_room_for(const std::string& peer) {
  auto oldest = sessions_.end();
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it)
    if (!it->second.partial && (oldest == sessions_.end() || it->second.last_seen < oldest->second.last_seen))
      oldest = it;
  if (oldest == sessions_.end())
    throw wire::ProtocolError(v1::OVER_BUDGET,
                              std::to_string(sessions_.size()) +
                                  " sessions are open, each receiving a checkpoint: the most this merger "
                                  "keeps (max_sessions); try again later");
  spdlog::warn("{} sessions open: closing the longest idle one (peer {}, run '{}') for peer {}", sessions_.size(),
               show_peer(oldest->first), oldest->second.run_id, show_peer(peer));
  return close(oldest);
}

Session SessionTable::close(iterator it) {
  Session s = std::move(it->second);
  sessions_.erase(it);
  return s;
}

}  // namespace wsm::merger
