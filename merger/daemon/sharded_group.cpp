#include "merger/daemon/sharded_group.h"

#include <algorithm>
#include <map>

namespace wsm::merger {

using wire::ProtocolError;

namespace {
std::string show(const std::vector<std::int64_t>& v) { return shape_text(v); }

std::uint64_t hash_of(const TensorBytes& t) {
  wire::StreamChecksum h;
  for (const auto& p : t.pieces) h.update(p.bytes);
  return h.digest();
}

// What the first rank holding a tensor declared, for the others to agree with.
struct Declared {
  int rank = 0;
  DType dtype = DType::f32;
  std::vector<std::int64_t> global_shape;
  bool replicated = false;
  std::size_t first_copy = 0;  // replicated: index of the kept copy in the node checkpoint
  std::vector<TensorSlice> slices;
};
}  // namespace

GroupMember group_member_from_hello(v1::Hello& hello) {
  const auto& g = hello.group();
  GroupMember m;
  if (g.world_size() < 1 || g.world_size() > (1u << 20))
    throw ProtocolError(v1::BAD_REQUEST, "hello: world size " + std::to_string(g.world_size()) + " is not in 1..2^20");
  if (g.rank() >= g.world_size())
    throw ProtocolError(v1::BAD_REQUEST, "hello: rank " + std::to_string(g.rank()) + " is not below the world size " +
                                             std::to_string(g.world_size()));
  const auto local = g.local_world_size() ? g.local_world_size() : g.world_size();
  if (local > g.world_size())
    throw ProtocolError(v1::BAD_REQUEST, "hello: local world size " + std::to_string(local) + " exceeds the world size " +
                                             std::to_string(g.world_size()));
  m.rank = static_cast<int>(g.rank());
  m.world_size = static_cast<int>(g.world_size());
  m.local_world_size = static_cast<int>(local);
  auto entries = std::make_shared<std::vector<PartEntry>>();
  std::map<std::string, int> blocks_of;
  for (auto& spec : *hello.mutable_manifest()) {
    if (++blocks_of[spec.name()] > kMaxSlicesPerTensor)
      throw ProtocolError(v1::BAD_REQUEST, "hello: tensor '" + spec.name() + "' has more than " +
                                               std::to_string(kMaxSlicesPerTensor) + " slices");
    PartEntry e;
    e.name = spec.name();
    e.slice.lengths.assign(spec.shape().begin(), spec.shape().end());
    e.slice.replicated = spec.replicated();
    if (spec.global_shape_size() == 0 && spec.offsets_size() == 0) {
      e.slice.global_shape = e.slice.lengths;
      e.slice.offsets.assign(e.slice.lengths.size(), 0);
    } else {
      e.slice.global_shape.assign(spec.global_shape().begin(), spec.global_shape().end());
      e.slice.offsets.assign(spec.offsets().begin(), spec.offsets().end());
    }
    if (auto problem = slice_problem(e.slice))
      throw ProtocolError(v1::BAD_REQUEST, "hello: tensor '" + e.name + "': " + *problem);
    e.entry = slice_entry_name(e.name, e.slice);
    spec.set_name(e.entry);
    entries->push_back(std::move(e));
  }
  m.entries = std::move(entries);
  return m;
}

std::shared_ptr<StoredCheckpoint> combine_parts(const std::string& run_id, std::vector<const RankPart*> parts) {
  std::sort(parts.begin(), parts.end(), [](auto* a, auto* b) { return a->member.rank < b->member.rank; });
  const auto& first = *parts.front();
  auto node = std::make_shared<StoredCheckpoint>();
  node->run_id = run_id;
  node->step = first.part->step;
  node->tokens = first.part->tokens;
  node->lr = first.part->lr;
  auto layout = std::make_shared<PartLayout>();
  layout->run_id = run_id;
  layout->world_size = first.member.world_size;
  layout->local_world_size = first.member.local_world_size;
  const std::string step = "run '" + run_id + "' step " + std::to_string(node->step) + ": ";
  std::map<std::string, Declared> declared;
  std::vector<std::string> order;  // tensor names, first seen
  for (const RankPart* p : parts) {
    const int rank = p->member.rank;
    if (p->member.world_size != layout->world_size || p->member.local_world_size != layout->local_world_size)
      throw ProtocolError(v1::SLICE_MISMATCH, step + "rank " + std::to_string(rank) + " declares world size " +
                                                  std::to_string(p->member.world_size) + " (local " +
                                                  std::to_string(p->member.local_world_size) + "), rank " +
                                                  std::to_string(first.member.rank) + " " +
                                                  std::to_string(layout->world_size) + " (local " +
                                                  std::to_string(layout->local_world_size) + ")");
    layout->ranks.push_back(rank);
    for (std::size_t i = 0; i < p->member.entries->size(); ++i) {
      const auto& e = (*p->member.entries)[i];
      const auto& info = p->part->tensors[i];
      auto [it, fresh] = declared.try_emplace(e.name, Declared{rank, info.dtype, e.slice.global_shape, e.slice.replicated});
      auto& d = it->second;
      const std::string who = step + "tensor '" + e.name + "': rank " + std::to_string(rank);
      if (fresh) order.push_back(e.name);
      if (d.dtype != info.dtype || d.global_shape != e.slice.global_shape)
        throw ProtocolError(v1::SLICE_MISMATCH, who + " declares " + std::string(dtype_name(info.dtype)) + " " +
                                                    show(e.slice.global_shape) + ", rank " + std::to_string(d.rank) +
                                                    " " + std::string(dtype_name(d.dtype)) + " " + show(d.global_shape));
      if (d.replicated != e.slice.replicated)
        throw ProtocolError(v1::SLICE_MISMATCH, who + (e.slice.replicated ? " marks it replicated" : " sends a slice") +
                                                    ", rank " + std::to_string(d.rank) +
                                                    (d.replicated ? " marks it replicated" : " sends a slice"));
      if (e.slice.replicated && !fresh) {
        if (hash_of(p->part->data[i]) != hash_of(node->data[d.first_copy]))
          throw ProtocolError(v1::SLICE_MISMATCH, who + "'s replicated copy differs from rank " + std::to_string(d.rank) + "'s");
        continue;
      }
      if (d.slices.size() >= kMaxSlicesPerTensorPerStep)
        throw ProtocolError(v1::SLICE_MISMATCH, who + ": the node's ranks send more than " +
                                                    std::to_string(kMaxSlicesPerTensorPerStep) + " blocks of it in one step");
      d.first_copy = node->tensors.size();
      d.slices.push_back(e.slice);
      node->tensors.push_back(info);
      node->data.push_back(p->part->data[i]);
      layout->entries.push_back(e);
    }
  }
  const bool whole_world = static_cast<int>(parts.size()) == layout->world_size;
  for (const auto& name : order) {
    const auto& d = declared.at(name);
    if (d.replicated) continue;
    if (auto problem = tiling_problem(d.slices, whole_world))
      throw ProtocolError(v1::SLICE_MISMATCH, step + "tensor '" + name + "': " + *problem);
  }
  node->part = std::move(layout);
  return node;
}

}  // namespace wsm::merger
