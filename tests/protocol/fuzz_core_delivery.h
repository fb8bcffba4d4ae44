#pragma once
// The daemon-core fuzz targets' delivery of one message, as the server hands it over: replies
// are dropped, and a ProtocolError escaping handle() is answered through fault() like the server
// does (anything else escaping is a finding).
#include <string>

#include "merger/daemon/daemon_core.h"

namespace wsm::fuzz {

inline void deliver(merger::MergerCore& core, merger::Clock::time_point now, const std::string& peer, v1::Envelope env,
                    const std::string& payload = {}) {
  wire::Message m;
  m.peer = peer;
  m.envelope = std::move(env);
  if (m.envelope.has_chunk()) m.payload = zmq::message_t(payload.data(), payload.size());
  try {
    (void)core.handle(std::move(m), now);
  } catch (const wire::ProtocolError& e) {
    (void)core.fault(peer, e, now);
  }
}

}  // namespace wsm::fuzz
