#pragma once
// MergerCore driven without sockets (shared by the daemon-core tests): a harness that records the
// emission jobs, sends messages at a controllable time, and the options the tests start from.
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "merger/daemon/daemon_core.h"
#include "serve_test_util.h"

namespace wsm::merger {

struct CoreHarness {
  std::vector<EmissionJob> jobs;
  std::unique_ptr<MergerCore> core;
  Clock::time_point now = Clock::now();

  explicit CoreHarness(CoreOptions o, CoreHooks hooks = {}) {
    core = std::make_unique<MergerCore>(
        std::move(o), [this](EmissionJob j) { jobs.push_back(std::move(j)); }, std::move(hooks));
  }
  std::vector<Outgoing> send(const std::string& peer, v1::Envelope env, std::span<const std::byte> payload = {}) {
    wire::Message m;
    m.peer = peer;
    m.envelope = std::move(env);
    if (m.envelope.has_chunk()) m.payload = zmq::message_t(payload.data(), payload.size());
    return core->handle(std::move(m), now);
  }
  // Sends a whole checkpoint; returns every reply that is not a Credit.
  std::vector<v1::Envelope> checkpoint(const std::string& peer, std::int64_t step, const std::vector<test::OwnedTensor>& model) {
    std::vector<v1::Envelope> replies;
    auto keep = [&](std::vector<Outgoing> out) {
      for (auto& o : out)
        if (!o.envelope.has_credit()) replies.push_back(o.envelope);
    };
    keep(send(peer, test::begin(step)));
    for (const auto& t : model) keep(send(peer, test::chunk(step, t.name, 0, test::bytes_of(t)), test::bytes_of(t)));
    keep(send(peer, test::end(step, model)));
    return replies;
  }
};

inline CoreOptions options(const std::string& emulate = "linear:300", std::int64_t every = 100) {
  CoreOptions o;
  o.emulations = parse_emulations(emulate);
  o.every = every;
  o.out_dir = test::temp_dir("core-out");
  o.partial_timeout = std::chrono::milliseconds(500);
  o.credit = 8;
  return o;
}

// The replies to `peer` that are not a Credit.
inline std::vector<v1::Envelope> bodies(const std::vector<Outgoing>& out, const std::string& peer) {
  std::vector<v1::Envelope> r;
  for (const auto& o : out)
    if (o.peer == peer && !o.envelope.has_credit()) r.push_back(o.envelope);
  return r;
}

inline v1::ErrorCode error_of(const std::vector<v1::Envelope>& replies) {
  for (const auto& r : replies)
    if (r.has_error()) return r.error().code();
  return v1::ERROR_UNSPECIFIED;
}

}  // namespace wsm::merger
