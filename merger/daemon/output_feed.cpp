#include "merger/daemon/output_feed.h"

#include <algorithm>

namespace wsm::merger {

v1::Envelope OutputFeed::reply_for(const v1::OutputsRequest& r) const {
  auto env = wire::envelope();
  auto* reply = env.mutable_outputs_reply();
  reply->set_server_id(server_id_);
  reply->set_latest(latest_);
  for (const auto& [seq, record] : recent_)
    if (seq > r.after() && (r.run_id().empty() || record.value("run_id", "") == r.run_id())) reply->add_records(record.dump());
  return env;
}

std::vector<OutputFeed::Reply> OutputFeed::request(const std::string& peer, const v1::OutputsRequest& r,
                                                   Clock::time_point now) {
  auto env = reply_for(r);
  if (env.outputs_reply().records_size() > 0 || r.timeout_ms() == 0) return {{peer, std::move(env)}};
  // Past a limit the oldest held request (this peer's, else anyone's) is answered now, empty, as
  // if its timeout had passed: a client asks again, and no flood of held requests locks an honest
  // waiter out (held_ is oldest first).
  std::vector<Reply> out;
  const auto mine = std::count_if(held_.begin(), held_.end(), [&](const Held& h) { return h.peer == peer; });
  auto oldest = held_.end();
  if (mine >= kMaxHeldPerPeer)
    oldest = std::find_if(held_.begin(), held_.end(), [&](const Held& h) { return h.peer == peer; });
  else if (held_.size() >= kMaxHeld)
    oldest = held_.begin();
  if (oldest != held_.end()) {
    out.emplace_back(oldest->peer, reply_for(oldest->request));
    held_.erase(oldest);
  }
  const auto timeout = std::chrono::milliseconds(std::min(r.timeout_ms(), kMaxTimeoutMs));
  held_.push_back({peer, r, now + timeout});
  return out;
}

std::vector<OutputFeed::Reply> OutputFeed::add(const std::vector<OutputRecord>& records) {
  for (const auto& record : records) {
    nlohmann::json numbered = record;  // the reply's form: the index's record and its number
    numbered["seq"] = ++latest_;
    recent_.emplace_back(latest_, std::move(numbered));
    if (recent_.size() > kKeep) recent_.pop_front();
  }
  std::vector<Reply> out;
  if (records.empty()) return out;
  std::erase_if(held_, [&](const Held& h) {
    auto env = reply_for(h.request);
    if (env.outputs_reply().records_size() == 0) return false;
    out.emplace_back(h.peer, std::move(env));
    return true;
  });
  return out;
}

std::vector<OutputFeed::Reply> OutputFeed::expire(Clock::time_point now) {
  std::vector<Reply> out;
  std::erase_if(held_, [&](const Held& h) {
    if (now < h.deadline) return false;
    out.emplace_back(h.peer, reply_for(h.request));
    return true;
  });
  return out;
}

}  // namespace wsm::merger
