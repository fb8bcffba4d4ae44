// libFuzzer target: protocol version 2 (sharded runs) through the daemon core, and the tiling
// check against a reference. The input is a script: ranks of one run say Hello with fuzzed group
// fields and slices (global shapes, offsets, lengths, replicated flags), send their parts of a step
// (right sizes and checksums unless the input says otherwise), say Bye, or let time pass. The
// contract: every message ends in replies or a ProtocolError (nothing else escapes the core), and
// tiling_problem agrees with a cell-by-cell count of the covered elements (overlap, gap, exact)
// on every slice set small enough to count. Any disagreement aborts.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "fuzz_core_delivery.h"
#include "merger/daemon/daemon_core.h"
#include "wsm/formats/tensor_slice.h"
#include "wsm/wire/wire.h"

namespace {

using namespace wsm;
using merger::Clock;

const char* const kNames[] = {"w", "b", "emb", ""};

std::int64_t small_or_any(FuzzedDataProvider& in, std::int64_t hi) {
  return in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegralInRange<std::int64_t>(0, hi) : in.ConsumeIntegral<std::int64_t>();
}

TensorSlice fuzz_slice(FuzzedDataProvider& in, const std::vector<std::int64_t>& global) {
  TensorSlice s;
  s.global_shape = global;
  for (auto g : global) {
    const auto o = in.ConsumeIntegralInRange<std::int64_t>(0, std::max<std::int64_t>(g, 0));
    s.offsets.push_back(o);
    s.lengths.push_back(in.ConsumeIntegralInRange<std::int64_t>(0, std::max<std::int64_t>(g - o, 0)));
  }
  if (in.ConsumeIntegralInRange(0, 15) == 0 && !s.offsets.empty()) s.offsets[0] = small_or_any(in, 8);  // maybe invalid
  return s;
}

// The reference: count how often each cell is covered (global shapes of at most 4096 cells).
void check_tiling(FuzzedDataProvider& in) {
  std::vector<std::int64_t> global;
  const int rank = in.ConsumeIntegralInRange(0, 3);
  std::int64_t cells = 1;
  for (int d = 0; d < rank; ++d) {
    global.push_back(in.ConsumeIntegralInRange<std::int64_t>(1, 16));
    cells *= global.back();
  }
  std::vector<TensorSlice> slices;
  const int n = in.ConsumeIntegralInRange(1, 64);
  for (int i = 0; i < n; ++i) {
    auto s = fuzz_slice(in, global);
    if (slice_problem(s)) continue;  // tiling_problem takes valid slices
    slices.push_back(std::move(s));
  }
  if (slices.empty()) return;
  std::vector<int> hits(static_cast<std::size_t>(cells));
  for (const auto& s : slices) {
    // Every cell of the block, by its multi-index.
    std::vector<std::int64_t> at(s.offsets);
    if (element_count(s.lengths) == 0) continue;
    for (;;) {
      std::int64_t flat = 0;
      for (std::size_t d = 0; d < global.size(); ++d) flat = flat * global[d] + at[d];
      ++hits[static_cast<std::size_t>(flat)];
      std::size_t d = global.size();
      while (d > 0) {
        --d;
        if (++at[d] < s.offsets[d] + s.lengths[d]) break;
        at[d] = s.offsets[d];
        if (d == 0) goto done;
      }
      if (global.empty()) break;
    }
  done:;
  }
  bool overlap = false, gap = false;
  for (int h : hits) overlap |= h > 1, gap |= h == 0;
  const bool cover = in.ConsumeBool();
  const auto problem = tiling_problem(slices, cover);
  const bool expected = overlap || (cover && gap);
  if (problem.has_value() != expected) {
    std::fprintf(stderr, "tiling_problem says '%s', the cell count overlap=%d gap=%d cover=%d\n",
                 problem ? problem->c_str() : "(none)", overlap, gap, cover);
    std::abort();
  }
  if (problem && overlap && problem->find("overlap") == std::string::npos) {
    std::fprintf(stderr, "an overlap reported as '%s'\n", problem->c_str());
    std::abort();
  }
}

struct Rank {
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> entries;  // wire name, lengths
};

struct Harness {
  std::unique_ptr<merger::MergerCore> core;
  Clock::time_point now = Clock::time_point{} + std::chrono::hours(1);
  std::map<std::string, Rank> ranks;  // by peer: what its last Hello declared

  void deliver(const std::string& peer, v1::Envelope env, const std::string& payload = {}) {
    fuzz::deliver(*core, now, peer, std::move(env), payload);
  }
};

void hello(Harness& h, FuzzedDataProvider& in, const std::string& peer, int rank) {
  auto env = wire::envelope();
  auto* hello = env.mutable_hello();
  hello->set_protocol_version(in.ConsumeIntegralInRange(0, 7) ? wire::kShardedProtocolVersion : 1);
  hello->set_run_id(in.ConsumeIntegralInRange(0, 7) ? "run" : "other");
  if (in.ConsumeIntegralInRange(0, 7)) {
    auto* g = hello->mutable_group();
    g->set_rank(in.ConsumeIntegralInRange(0, 7) ? static_cast<std::uint32_t>(rank) : in.ConsumeIntegral<std::uint32_t>());
    g->set_world_size(in.ConsumeIntegralInRange(0, 7) ? 4 : in.ConsumeIntegral<std::uint32_t>());
    g->set_local_world_size(in.ConsumeIntegralInRange(0, 3) ? 2 : in.ConsumeIntegralInRange<std::uint32_t>(0, 5));
  }
  Rank r;
  const int n = in.ConsumeIntegralInRange(0, 5);
  for (int i = 0; i < n; ++i) {
    auto* s = hello->add_manifest();
    const std::string name = kNames[in.ConsumeIntegralInRange(0, 3)];
    s->set_name(name);
    s->set_dtype(in.ConsumeIntegralInRange(0, 7) ? "f32" : "i8");
    std::vector<std::int64_t> global;
    const int dims = in.ConsumeIntegralInRange(0, 3);
    for (int d = 0; d < dims; ++d) global.push_back(small_or_any(in, 8));
    auto slice = fuzz_slice(in, global);
    slice.replicated = in.ConsumeIntegralInRange(0, 5) == 0;
    if (in.ConsumeIntegralInRange(0, 7)) {
      for (auto v : global) s->add_global_shape(v);
      for (auto v : slice.offsets) s->add_offsets(v);
    }
    for (auto v : slice.lengths) s->add_shape(v);
    s->set_replicated(slice.replicated);
    r.entries.emplace_back(slice_problem(slice) ? name : slice_entry_name(name, slice), slice.lengths);
  }
  h.ranks[peer] = std::move(r);
  h.deliver(peer, std::move(env));
}

// A part of a step, per the rank's Hello: values from the input, sizes from the lengths.
void part(Harness& h, FuzzedDataProvider& in, const std::string& peer) {
  const auto step = in.ConsumeIntegralInRange<std::int64_t>(0, 4) * 100;
  auto begin = wire::envelope();
  begin.mutable_begin()->set_step(step);
  begin.mutable_begin()->set_tokens(step * 10);
  h.deliver(peer, std::move(begin));
  wire::ChecksumChain chain;
  std::uint64_t total = 0;
  for (const auto& [name, lengths] : h.ranks[peer].entries) {
    std::uint64_t bytes = 4;
    for (auto l : lengths) bytes *= static_cast<std::uint64_t>(std::clamp<std::int64_t>(l, 0, 64));
    if (bytes == 0) continue;
    std::string payload = in.ConsumeBytesAsString(static_cast<std::size_t>(bytes));
    payload.resize(static_cast<std::size_t>(bytes), '\x3f');
    auto env = wire::envelope();
    auto* c = env.mutable_chunk();
    c->set_step(step);
    c->set_name(name);
    c->set_length(payload.size());
    const auto sum = wire::checksum(std::as_bytes(std::span(payload)));
    c->set_checksum(in.ConsumeIntegralInRange(0, 15) ? sum : sum + 1);
    chain.add(sum);
    total += payload.size();
    h.deliver(peer, std::move(env), std::move(payload));
  }
  auto end = wire::envelope();
  end.mutable_end()->set_step(step);
  end.mutable_end()->set_total_bytes(total);
  end.mutable_end()->set_checksum(chain.digest());
  h.deliver(peer, std::move(end));
}

void step_once(Harness& h, FuzzedDataProvider& in) {
  const int rank = in.ConsumeIntegralInRange(0, 3);
  const std::string peer = "r" + std::to_string(rank);
  switch (in.ConsumeIntegralInRange(0, 5)) {
    case 0: hello(h, in, peer, rank); return;
    case 1:
    case 2: part(h, in, peer); return;
    case 3: {
      auto bye = wire::envelope();
      bye.mutable_bye();
      h.deliver(peer, std::move(bye));
      return;
    }
    case 4: check_tiling(in); return;
    default:  // time passes: steps expire, combinations are collected
      h.now += std::chrono::milliseconds(in.ConsumeIntegralInRange(0, 8000));
      (void)h.core->expire(h.now);
      (void)h.core->pump();
      (void)h.core->status(h.now);
      return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("wsm-fuzz-sharded-" + std::to_string(::getpid()));
  FuzzedDataProvider in(data, size);
  merger::CoreOptions o;
  o.emulations = merger::parse_emulations("linear:300");
  o.every = 100;
  o.out_dir = out;
  o.store.memory_budget = in.ConsumeBool() ? (1 << 20) : (4 << 10);  // small: admission refusals too
  o.partial_timeout = std::chrono::milliseconds(5000);
  Harness h;
  h.core = std::make_unique<merger::MergerCore>(std::move(o), [](merger::EmissionJob) {});  // emissions not run
  while (in.remaining_bytes() > 0) step_once(h, in);
  return 0;
}
