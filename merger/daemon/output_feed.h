#pragma once
// Tells clients of new outputs without their polling files: each output the daemon writes gets a
// sequence number (from 1, per daemon start); an OutputsRequest for those after N is answered at
// once when there are some, else held until one is written or its timeout passes (a long poll).
// The last kKeep records are remembered; held requests are bounded per peer and in all (past a
// bound, the oldest held request is answered early, empty).
#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "merger/daemon/output_record.h"

#include "wsm/wire/wire.h"

namespace wsm::merger {

class OutputFeed {
 public:
  using Clock = std::chrono::steady_clock;
  using Reply = std::pair<std::string, v1::Envelope>;  // peer, envelope
  static constexpr std::size_t kKeep = 1024;
  static constexpr int kMaxHeldPerPeer = 4;
  static constexpr std::size_t kMaxHeld = 256;
  static constexpr std::uint32_t kMaxTimeoutMs = 60000;

  explicit OutputFeed(std::string server_id) : server_id_(std::move(server_id)) {}

  // Answers now (a reply in the result) or holds the request; past the limits on held requests,
  // also answers the oldest held one (the peer's own first), empty.
  std::vector<Reply> request(const std::string& peer, const v1::OutputsRequest& r, Clock::time_point now);
  // Numbers newly written outputs (index.json records) and answers the held requests they satisfy.
  std::vector<Reply> add(const std::vector<OutputRecord>& records);
  // Answers held requests whose timeout passed (with no records).
  std::vector<Reply> expire(Clock::time_point now);
  std::uint64_t latest() const { return latest_; }

 private:
  struct Held {
    std::string peer;
    v1::OutputsRequest request;
    Clock::time_point deadline;
  };
  v1::Envelope reply_for(const v1::OutputsRequest& r) const;  // its records may be empty

  std::string server_id_;
  std::deque<std::pair<std::uint64_t, nlohmann::json>> recent_;  // oldest first
  std::vector<Held> held_;
  std::uint64_t latest_ = 0;
};

}  // namespace wsm::merger
