#pragma once
// C++ client for the merger daemon (`wsm serve`). send_checkpoint() returns quickly: the tensors
// are copied into a buffer and a background thread streams them over ZeroMQ, so training never waits
// on the network (while a copy runs, the background thread stops streaming and copies part of it,
// so the call takes less than a memcpy). The queue of snapshots is bounded (ClientOptions::queue_bytes);
// what happens when it is full, or the merger is gone, is the client's OutagePolicy.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
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

// What the client does with its checkpoints while the merger is slow or gone (the same three
// policies as the Python client; docs/protocol.md, "Clients during an outage"). Deadlines count
// from when a checkpoint was queued, so checkpoints waiting out one outage fail together.
enum class OutagePolicy {
  // Never blocks: a full queue drops its oldest waiting checkpoint (reported as a failure); a
  // checkpoint still undelivered reconnect_timeout_ms after it was queued fails.
  drop_oldest,
  // Loses nothing: a full queue blocks send_checkpoint until there is room; retried without a
  // deadline (close() still gives up after reconnect + stall timeout).
  wait,
  // Never blocks, never retries: a checkpoint the merger does not take at the first try fails, and
  // the next send_checkpoint() or flush() throws; so does send_checkpoint on a full queue.
  fail_fast,
};
// "drop-oldest", "wait", "fail-fast" (throws wsm::Error naming the choices otherwise).
OutagePolicy parse_outage_policy(std::string_view text);
std::string_view outage_policy_name(OutagePolicy policy);

struct ClientOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string run_id = "run";
  std::size_t chunk_bytes = 4 << 20;
  std::size_t queue_bytes = 1ull << 30;  // snapshots waiting to be sent
  OutagePolicy policy = OutagePolicy::drop_oldest;
  // How long after it was queued a checkpoint is retried (merger restarts, OVER_BUDGET); not a
  // limit under OutagePolicy::wait.
  int reconnect_timeout_ms = 30000;
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
  std::uint64_t queue_waits = 0;  // send_checkpoint calls that waited for room (OutagePolicy::wait)
  std::uint64_t checkpoints_dropped = 0;  // dropped undelivered for room (OutagePolicy::drop_oldest)
  std::uint64_t budget_waits = 0;  // tries refused as OVER_BUDGET and waited out
};

class MergerClient {
 public:
  explicit MergerClient(ClientOptions options);
  ~MergerClient();  // close()
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
  // the failures (merger errors, an unreachable merger past reconnect_timeout_ms, drops) since the
  // last flush. Under OutagePolicy::wait it waits as long as the merger is away.
  void flush();
  // Delivers what it can within reconnect + stall timeout (under every policy), fails what is
  // left, stops the sender thread and logs one line when anything failed. Reports, never throws
  // (call flush() first to get the failures as an exception).
  void close();
  ClientStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsm
