// libFuzzer target for the checkpoint assembler (merger/daemon/checkpoint_assembler.h): a manifest from a
// fuzzed Hello, then fuzzed chunks and an End. Checksums are right unless the input says otherwise,
// so the fuzzer reaches ordering, gap, overlap and size checks. Every fault must be a
// wire::ProtocolError; a checkpoint that finish() accepts must hold exactly the bytes sent.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "merger/daemon/checkpoint_assembler.h"
#include "wsm/wire/wire.h"

namespace {

using namespace wsm;

const char* const kDtypes[] = {"f32", "f16", "bf16", "f64", "i8", "u8", "bool", "i64", "nope", ""};
const char* const kNames[] = {"w", "b", "c", ""};

v1::Hello fuzz_hello(FuzzedDataProvider& in) {
  v1::Hello h;
  h.set_protocol_version(1);
  h.set_run_id("run");
  const int n = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < n; ++i) {
    auto* s = h.add_manifest();
    s->set_name(kNames[in.ConsumeIntegralInRange(0, 3)]);
    s->set_dtype(kDtypes[in.ConsumeIntegralInRange(0, 9)]);
    const int rank = in.ConsumeIntegralInRange(0, 3);
    for (int d = 0; d < rank; ++d)
      s->add_shape(in.ConsumeBool() ? in.ConsumeIntegralInRange<std::int64_t>(0, 40) : in.ConsumeIntegral<std::int64_t>());
  }
  return h;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::shared_ptr<const merger::Manifest> manifest;
  try {
    manifest = merger::manifest_from_hello(fuzz_hello(in));
  } catch (const wire::ProtocolError&) {
    return 0;
  }
  v1::CheckpointBegin begin;
  begin.set_step(in.ConsumeIntegral<std::int64_t>());
  begin.set_tokens(in.ConsumeIntegral<std::int64_t>());
  std::vector<std::pair<std::string, std::string>> sent;  // (tensor, bytes) accepted, in order
  wire::ChecksumChain chain;
  std::uint64_t total = 0;
  try {
    merger::CheckpointAssembler a("run", manifest, begin);
    while (in.remaining_bytes() > 1 && in.ConsumeIntegralInRange(0, 7) != 0) {
      v1::TensorChunk c;
      c.set_step(in.ConsumeBool() ? begin.step() : in.ConsumeIntegral<std::int64_t>());
      c.set_name(kNames[in.ConsumeIntegralInRange(0, 3)]);
      c.set_offset(in.ConsumeBool() ? in.ConsumeIntegralInRange<std::uint64_t>(0, 256)
                                    : in.ConsumeIntegral<std::uint64_t>());
      const std::string payload = in.ConsumeRandomLengthString(in.ConsumeBool() ? 300 : 70000);
      c.set_length(in.ConsumeBool() ? payload.size() : in.ConsumeIntegral<std::uint64_t>());
      const std::uint64_t sum = wire::checksum(std::as_bytes(std::span(payload)));
      c.set_checksum(in.ConsumeBool() ? sum : in.ConsumeIntegral<std::uint64_t>());
      a.add(c, zmq::message_t(payload.data(), payload.size()));
      sent.emplace_back(c.name(), payload);
      chain.add(sum);
      total += payload.size();
    }
    v1::CheckpointEnd end;
    end.set_step(in.ConsumeBool() ? begin.step() : in.ConsumeIntegral<std::int64_t>());
    end.set_total_bytes(in.ConsumeBool() ? total : in.ConsumeIntegral<std::uint64_t>());
    end.set_checksum(in.ConsumeBool() ? chain.digest() : in.ConsumeIntegral<std::uint64_t>());
    const auto c = a.finish(end);
    // Accepted: each tensor's stored bytes are the concatenation of its chunks, in order.
    if (c->tensors.size() != manifest->size() || c->data.size() != manifest->size()) std::abort();
    for (std::size_t t = 0; t < manifest->size(); ++t) {
      std::string want;
      for (const auto& [name, bytes] : sent)
        if (name == (*manifest)[t].name) want += bytes;
      if (want.size() != (*manifest)[t].nbytes()) std::abort();
      std::string got(want.size(), '\0');
      c->data[t].read(0, std::as_writable_bytes(std::span(got)));
      if (got != want) std::abort();
    }
  } catch (const wire::ProtocolError&) {
  }
  return 0;
}
