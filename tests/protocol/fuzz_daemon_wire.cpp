// libFuzzer target: wsm.v1 messages from two peers through the daemon core (merger/daemon/daemon_core.h,
// sans I/O), as the server would deliver them. The input is a script of operations: raw envelope
// frames through wire::parse_envelope (what arrives off the socket), and structured Hello / Begin /
// Chunk / End / MergeRequest messages with fuzzed fields, whose checksums are right unless the
// input says otherwise, so the fuzzer gets past the checks into assembly, the window and emission
// planning. The contract (docs/protocol.md): every message ends in replies or a ProtocolError
// that the server sends back; anything else escaping the core would stop `wsm serve` and is a bug.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "fuzz_core_delivery.h"
#include "merger/daemon/daemon_core.h"
#include "wsm/wire/wire.h"

namespace {

using namespace wsm;
using merger::Clock;

const char* const kDtypes[] = {"f32", "f16", "bf16", "f64", "i8", "u8", "bool", "F32", "x", ""};
const char* const kNames[] = {"w", "b", "layer.0", ""};
const char* const kShapes[] = {"linear", "1-sqrt", "cosine", "ema:alpha=0.5", "uniform", "weights=0.5,0.5", "x", ""};
const char* const kWindows[] = {"800", "3", "50Mt", "0", "-1", "99999999999999999999", "x", ""};

std::int64_t fuzz_dim(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: return in.ConsumeIntegralInRange<std::int64_t>(0, 8);
    case 1: return in.ConsumeIntegralInRange<std::int64_t>(0, 70000);
    default: return in.ConsumeIntegral<std::int64_t>();
  }
}

std::int64_t fuzz_step(FuzzedDataProvider& in) {
  return in.ConsumeBool() ? in.ConsumeIntegralInRange<std::int64_t>(0, 40) * 100 : in.ConsumeIntegral<std::int64_t>();
}

struct Harness {
  std::unique_ptr<merger::MergerCore> core;
  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
  std::map<std::string, wire::ChecksumChain> chains;  // per peer: checksums of the chunks sent since Begin
  std::map<std::string, std::uint64_t> totals;

  void deliver(const std::string& peer, v1::Envelope env, const std::string& payload = {}) {
    fuzz::deliver(*core, now, peer, std::move(env), payload);
  }
};

void step_once(Harness& h, FuzzedDataProvider& in) {
  const std::string peer = in.ConsumeBool() ? "a" : "b";
  auto env = wire::envelope();
  switch (in.ConsumeIntegralInRange(0, 8)) {
    case 0: {  // a raw frame, as it comes off the socket
      const bool has_payload = in.ConsumeBool();
      const std::string frame = in.ConsumeRandomLengthString(512);
      try {
        env = wire::parse_envelope(std::as_bytes(std::span(frame)), has_payload);
      } catch (const wire::ProtocolError& e) {
        (void)h.core->fault(peer, e, h.now);
        return;
      }
      h.deliver(peer, std::move(env), has_payload ? in.ConsumeRandomLengthString(256) : "");
      return;
    }
    case 1: {
      auto* hello = env.mutable_hello();
      hello->set_protocol_version(in.ConsumeBool() ? 1 : in.ConsumeIntegral<std::uint32_t>());
      hello->set_run_id(in.ConsumeBool() ? "run" : in.ConsumeRandomLengthString(16));
      const int n = in.ConsumeIntegralInRange(0, 3);
      for (int i = 0; i < n; ++i) {
        auto* s = hello->add_manifest();
        s->set_name(kNames[in.ConsumeIntegralInRange(0, 3)]);
        s->set_dtype(kDtypes[in.ConsumeIntegralInRange(0, 9)]);
        const int rank = in.ConsumeIntegralInRange(0, 3);
        for (int d = 0; d < rank; ++d) s->add_shape(fuzz_dim(in));
      }
      break;
    }
    case 2: {
      env.mutable_begin()->set_step(fuzz_step(in));
      env.mutable_begin()->set_tokens(in.ConsumeIntegral<std::int64_t>());
      env.mutable_begin()->set_lr(in.ConsumeFloatingPoint<double>());
      h.chains.erase(peer);  // a fresh chain (not assignable: it owns a hash state)
      h.totals[peer] = 0;
      break;
    }
    case 3: {
      auto* c = env.mutable_chunk();
      c->set_step(fuzz_step(in));
      c->set_name(kNames[in.ConsumeIntegralInRange(0, 3)]);
      c->set_offset(in.ConsumeBool() ? in.ConsumeIntegralInRange<std::uint64_t>(0, 4096)
                                     : in.ConsumeIntegral<std::uint64_t>());
      std::string payload = in.ConsumeRandomLengthString(4096);
      c->set_length(in.ConsumeBool() ? payload.size() : in.ConsumeIntegral<std::uint64_t>());
      const std::uint64_t sum = wire::checksum(std::as_bytes(std::span(payload)));
      c->set_checksum(in.ConsumeBool() ? sum : in.ConsumeIntegral<std::uint64_t>());
      h.chains[peer].add(sum);
      h.totals[peer] += payload.size();
      h.deliver(peer, std::move(env), std::move(payload));
      return;
    }
    case 4: {
      auto* e = env.mutable_end();
      e->set_step(fuzz_step(in));
      e->set_total_bytes(in.ConsumeBool() ? h.totals[peer] : in.ConsumeIntegral<std::uint64_t>());
      e->set_checksum(in.ConsumeBool() ? h.chains[peer].digest() : in.ConsumeIntegral<std::uint64_t>());
      break;
    }
    case 5: {
      auto* r = env.mutable_merge_request();
      r->set_request_id(in.ConsumeIntegral<std::uint64_t>());
      r->set_run_id(in.ConsumeBool() ? "run" : in.ConsumeRandomLengthString(8));
      r->set_shape(in.ConsumeBool() ? kShapes[in.ConsumeIntegralInRange(0, 7)] : in.ConsumeRandomLengthString(32));
      r->set_window(kWindows[in.ConsumeIntegralInRange(0, 7)]);
      r->set_dtype(kDtypes[in.ConsumeIntegralInRange(0, 9)]);
      break;
    }
    case 6: env.mutable_status_request(); break;
    case 7: env.mutable_bye(); break;
    default:  // time passes: partials expire, the store writer's work is collected
      h.now += std::chrono::milliseconds(in.ConsumeIntegralInRange(0, 60000));
      (void)h.core->expire(h.now);
      (void)h.core->pump();
      (void)h.core->status(h.now);
      return;
  }
  h.deliver(peer, std::move(env), "");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("wsm-fuzz-daemon-" + std::to_string(::getpid()));
  FuzzedDataProvider in(data, size);
  merger::CoreOptions o;
  o.emulations = merger::parse_emulations(in.ConsumeBool() ? "linear:300" : "ema:alpha=0.2:400,1-sqrt:200");
  o.every = in.ConsumeBool() ? 100 : 0;
  o.out_dir = out;
  o.credit = 4;
  o.max_chunk_bytes = 1 << 16;
  o.store.memory_budget = 1 << 20;  // small: spilling is exercised (RAM only: no store_dir)
  o.partial_timeout = std::chrono::milliseconds(5000);
  o.running_sums = in.ConsumeBool();
  Harness h;
  h.core = std::make_unique<merger::MergerCore>(std::move(o), [](merger::EmissionJob) {});  // emissions not run
  while (in.remaining_bytes() > 0) step_once(h, in);
  return 0;
}
