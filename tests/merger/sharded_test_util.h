#pragma once
// Sharded ranks' blocks for the daemon-core tests: a rank's Hello (protocol version 2) and its part
// of a step, values from test::tensor_value.
#include <string>
#include <vector>

#include "serve_test_util.h"
#include "wsm/formats/tensor_slice.h"

namespace wsm::test {

using Shape = std::vector<std::int64_t>;

// One block a rank sends: tensor name, global shape, offsets, lengths; values from the formula.
struct Block {
  std::string name;
  Shape global, offsets, lengths;
  bool replicated = false;
  std::string dtype = "f32";
  float bump = 0;  // added to every value (a differing copy)
};

inline std::vector<OwnedTensor> owned(const std::vector<Block>& blocks, std::int64_t step) {
  std::vector<OwnedTensor> out;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const auto& b = blocks[i];
    OwnedTensor t{slice_entry_name(b.name, {b.global, b.offsets, b.lengths, b.replicated}), b.lengths, {}};
    t.values.resize(element_count(b.lengths));
    for (std::size_t k = 0; k < t.values.size(); ++k) t.values[k] = tensor_value(static_cast<int>(i), step, k) + b.bump;
    out.push_back(std::move(t));
  }
  return out;
}

inline v1::Envelope group_hello(const std::string& run, int rank, int world, int local, const std::vector<Block>& blocks) {
  auto env = wire::envelope();
  auto* h = env.mutable_hello();
  h->set_protocol_version(wire::kShardedProtocolVersion);
  h->set_run_id(run);
  h->mutable_group()->set_rank(static_cast<std::uint32_t>(rank));
  h->mutable_group()->set_world_size(static_cast<std::uint32_t>(world));
  h->mutable_group()->set_local_world_size(static_cast<std::uint32_t>(local));
  for (const auto& b : blocks) {
    auto* s = h->add_manifest();
    s->set_name(b.name);
    s->set_dtype(b.dtype);
    for (auto d : b.lengths) s->add_shape(d);
    for (auto d : b.global) s->add_global_shape(d);
    for (auto d : b.offsets) s->add_offsets(d);
    s->set_replicated(b.replicated);
  }
  return env;
}

}  // namespace wsm::test
