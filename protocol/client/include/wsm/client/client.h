#pragma once
// C++ client for the merger daemon (`wsm serve`). send_checkpoint() returns quickly: the tensors
// are copied into a buffer and a background thread streams them over ZeroMQ, so training never waits
// on the network (while a copy runs, the background thread stops streaming and copies part of it,
// so the call takes less than a memcpy). The queue of snapshots is bounded (ClientOptions::queue_bytes); when it is full,
// send_checkpoint waits for room and logs a warning (policy "wait"), so memory stays bounded.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "wsm/formats/checkpoint.h"

namespace wsm {

struct TensorView {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;  // of the data; with a slice, the block's lengths
  std::span<const std::byte> data;
  // Sharded jobs: the data is the block of a tensor of `global_shape` starting at `offsets` (both
  // empty: the whole tensor). `replicated`: a whole copy every holder sends (checked equal).
  // Several views may name one tensor with different blocks.
  std::vector<std::int64_t> global_shape;
  std::vector<std::int64_t> offsets;
  bool replicated = false;
};

struct ClientOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string run_id = "run";
  std::size_t chunk_bytes = 4 << 20;
  std::size_t queue_bytes = 1ull << 30;  // snapshots waiting to be sent
  int reconnect_timeout_ms = 30000;      // how long to retry a checkpoint (merger restarts, OVER_BUDGET)
  // Silence from the merger this long while it owes a reply (credit, ack, welcome) means it went
  // away: the client reconnects and resends the checkpoint from its start.
  int stall_timeout_ms = 5000;
  // CURVE (all three Z85, 40 characters) for a merger on a non-loopback address.
  std::string curve_server_key;
  std::string curve_public_key;
  std::string curve_secret_key;
  // Sharded jobs (protocol version 2): this sender is rank `rank` of `world_size`, and
  // `local_world_size` ranks (0: all) send to this merger. A step completes at the merger once
  // they all delivered; the ack waits for that. world_size 1 without slices is the plain protocol.
  int rank = 0;
  int world_size = 1;
  int local_world_size = 0;
  // The model's metadata (config, vocabulary, ...), sent in every Hello: the merger writes it into
  // each merged output beside the provenance, so an output is usable on its own. No key may start
  // with "wsm."; at most 256 keys and 1 MiB in all; the same for every Hello of a run (and every rank).
  std::map<std::string, std::string> metadata;
};

// What the client has done so far (for logs, tests and benchmarks).
struct ClientStats {
  std::uint64_t checkpoints_acked = 0;
  std::uint64_t checkpoints_failed = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t reconnects = 0;
  std::uint64_t resends = 0;
  std::uint64_t queue_waits = 0;  // send_checkpoint calls that waited for room
  std::uint64_t budget_waits = 0;  // tries refused as OVER_BUDGET and waited out
};

class MergerClient {
 public:
  explicit MergerClient(ClientOptions options);
  ~MergerClient();  // flushes, then closes
  MergerClient(const MergerClient&) = delete;
  MergerClient& operator=(const MergerClient&) = delete;

  void send_checkpoint(std::int64_t step, std::int64_t tokens, double lr, std::span<const TensorView> tensors);
  // The same without the snapshot copy, for a trainer that already stages each checkpoint in a
  // buffer of its own (e.g. pinned memory the GPU copies into): the tensors' bytes are streamed in
  // place and must stay unchanged until the client drops `owner` (after the checkpoint is
  // acknowledged or has failed). Counts against queue_bytes like a snapshot.
  void send_checkpoint_owned(std::int64_t step, std::int64_t tokens, double lr, std::span<const TensorView> tensors,
                             std::shared_ptr<const void> owner);
  // Blocks until every queued checkpoint is acknowledged or has failed; throws wsm::Error listing
  // the failures (merger errors, or an unreachable merger past reconnect_timeout_ms) since the
  // last flush.
  void flush();
  void close();
  ClientStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsm
