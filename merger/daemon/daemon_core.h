#pragma once
// The daemon's message handling, without sockets: each incoming wsm.v1 message becomes a list of
// replies, complete checkpoints enter the window store, and emissions that fall due are handed to
// a sink (the emission worker). The server (server.h) only moves frames; tests drive this directly.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "merger/daemon/checkpoint_assembler.h"
#include "merger/daemon/emission.h"
#include "merger/daemon/group_collector.h"
#include "merger/daemon/ingest_stats.h"
#include "merger/engine/model_metadata.h"
#include "merger/daemon/output_feed.h"
#include "merger/daemon/output_record.h"
#include "merger/daemon/request_queue.h"
#include "merger/daemon/run_registry.h"
#include "merger/daemon/session_table.h"
#include "merger/daemon/step_combiner.h"
#include "merger/daemon/window_store.h"
#include "wsm/wire/wire.h"

namespace wsm::merger {

using Clock = std::chrono::steady_clock;

struct CoreOptions {
  std::vector<Emulation> emulations;
  std::int64_t every = 0;                 // steps between periodic outputs
  std::filesystem::path out_dir = "merged";
  std::optional<DType> dtype;             // output dtype; empty keeps each input's
  OutputFormatOptions output;             // h5 (default), safetensors or a Hugging Face directory
  StoreOptions store;
  std::uint32_t credit = 16;              // chunks in flight per peer
  std::uint64_t max_chunk_bytes = 64ull << 20;
  std::chrono::milliseconds partial_timeout{30000};  // a silent sender's partial checkpoint is dropped
  std::string server_id;                  // random per start when empty
  bool running_sums = true;               // uniform/EMA emulations as running sums (running_sum.h)
  // Sessions kept at once: a Hello past it closes the longest idle session that is not receiving a
  // checkpoint (that peer is told NO_SESSION), or is refused when every one is.
  std::size_t max_sessions = 256;
};

// Limits on what one peer may ask (docs/protocol.md, "Limits"; the queued requests' are in
// request_queue.h).
inline constexpr std::int64_t kMaxStepJump = std::int64_t{1} << 32;  // past the run's newest step
inline constexpr int kMaxHelloTensors = 1 << 16;                     // manifest entries (tensors or slices) per Hello

// The largest ZeroMQ frame the daemon accepts (ZMQ_MAXMSGSIZE): a chunk, or an envelope (a
// Hello's manifest) of up to 16 MiB, and never much more than the memory budget (no chunk of a
// checkpoint that fits the budget is larger).
std::uint64_t max_message_bytes(const CoreOptions& options);
// The largest envelope frame (the message without a chunk's payload) that is parsed: a 32nd of the
// memory budget, between 256 KiB and 16 MiB (parsing takes several times the frame in RAM).
std::uint64_t max_envelope_bytes(const CoreOptions& options);

struct Outgoing {
  std::string peer;
  v1::Envelope envelope;
};

// What other parts of the daemon lend the core, given at construction (each may be empty).
struct CoreHooks {
  TaskRunner combine;  // runs a sharded step's combination (step_combiner.h); empty: at once, inline
  std::function<std::vector<v1::PendingEmission>()> pending;  // the emission worker's queue, for status
  std::function<void(v1::StatusReply&)> status_extra;         // adds what other parts know (the evaluator's scores)
  std::function<std::uint64_t()> running_sum_bytes;           // the worker's running sums, against the memory budget
};

// Delegates its state: sessions (session_table.h), runs (run_registry.h), counters and rates
// (ingest_stats.h), queued merge requests (request_queue.h), the window (window_store.h) and sharded
// steps (group_collector.h); what stays here is the protocol: which message does what to them.
class MergerCore {
 public:
  using JobSink = std::function<void(EmissionJob)>;

  MergerCore(CoreOptions options, JobSink sink, CoreHooks hooks = {});

  // Rebuilds the window from --store (call once before serving).
  void restore();

  std::vector<Outgoing> handle(wire::Message msg, Clock::time_point now);  // takes a chunk's payload frame
  // A message that failed framing checks: the error goes back to its sender.
  std::vector<Outgoing> fault(const std::string& peer, const wire::ProtocolError& error, Clock::time_point now);
  // Drops partial checkpoints whose sender has been silent past partial_timeout.
  std::vector<Outgoing> expire(Clock::time_point now);
  // Called often by the server loop: spills what the store writer has persisted meanwhile, grants
  // the credit withheld while the writer was behind (store_.backlogged()), and finishes the
  // sharded steps whose combination is done.
  std::vector<Outgoing> pump();
  bool withholding_credit() const { return withholding_; }
  // The worker finished (or failed) a job: MergeReply/ErrorReply for an on-demand merge.
  std::vector<Outgoing> job_done(const EmissionJob& job, const std::vector<OutputRecord>& records,
                                 const std::string& error);

  v1::StatusReply status(Clock::time_point now) const;
  // Waits for the store writer (clean shutdown, tests).
  void flush_store() { store_.flush(); }
  void stop_accepting() { accepting_ = false; }

  const WindowStore& store() const { return store_; }
  const CoreOptions& options() const { return options_; }
  const std::string& server_id() const { return options_.server_id; }

 private:
  struct HelloPlan;  // what a Hello asks for, checked step by step (daemon_core.cpp)

  void dispatch(wire::Message& msg, Clock::time_point now, std::vector<Outgoing>& out);
  void on_hello(const wire::Message& msg, Clock::time_point now, std::vector<Outgoing>& out);
  void check_hello(const wire::Message& msg) const;
  HelloPlan plan_hello(const v1::Hello& hello) const;
  void check_manifest(const std::string& run, HelloPlan& plan);
  void check_hello_budget(const std::string& run, const HelloPlan& plan) const;
  void open_session(const wire::Message& msg, HelloPlan& plan, Clock::time_point now);
  void on_begin(Session& s, const std::string& peer, const v1::CheckpointBegin& b, std::vector<Outgoing>& out);
  void on_chunk(Session& s, wire::Message& msg, std::vector<Outgoing>& out);
  void on_end(Session& s, const std::string& peer, const v1::CheckpointEnd& e, std::vector<Outgoing>& out);
  // Sharded runs (sharded_group.h): a Hello's group, a rank's verified part, a step's outcome.
  void declare_group(const std::string& run, const GroupMember& member, std::uint64_t bytes);
  std::uint64_t node_step_bytes(const std::string& run, const GroupMember& asking, std::uint64_t bytes) const;
  void admit_group_step(const Session& s, std::int64_t step, Clock::time_point now);  // throws OVER_BUDGET
  void take_combined(std::vector<Outgoing>& out);
  void deliver_part(Session& s, const std::string& peer, std::shared_ptr<StoredCheckpoint> part, const v1::CheckpointEnd& e,
                    std::vector<Outgoing>& out);
  void finish_group_step(GroupOutcome outcome, std::vector<Outgoing>& out);
  void group_heartbeats(Clock::time_point now, std::vector<Outgoing>& out);
  void commit(const std::string& run_id, std::shared_ptr<StoredCheckpoint> c, const std::vector<std::string>& peers,
              std::vector<Outgoing>& out);
  void on_merge_request(const wire::Message& msg, std::vector<Outgoing>& out);
  void submit_merge_request(const wire::Message& msg);  // throws the error to send
  void check_step_bounds(const std::string& run_id, std::int64_t step) const;
  void check_memory_budget(const Session& s) const;
  std::uint64_t partial_bytes() const;  // checkpoints being received, each counted whole
  std::uint64_t held_bytes() const;     // what the memory budget holds besides the window's spillable copies
  void end_session(SessionTable::iterator it);
  void session_closed(const Session& s);  // releases what it held, forgets its run if unused
  void forget_run_if_unused(const std::string& run);
  std::uint64_t running_sum_bytes() const { return hooks_.running_sum_bytes ? hooks_.running_sum_bytes() : 0; }
  void take_over_partials(const std::string& run_id, std::int64_t step, const std::string& peer,
                          std::vector<Outgoing>& out);
  void reject(Session& s, const std::string& peer, std::int64_t step, const wire::ProtocolError& e,
              std::vector<Outgoing>& out);
  void grant(Session& s, const std::string& peer, std::vector<Outgoing>& out, bool force);
  void acknowledge_resend(const Session& s, const std::string& peer, const StoredCheckpoint& c, std::vector<Outgoing>& out);
  void after_commit(const std::string& run_id, std::int64_t step, const std::vector<Entry>& dropped);

  CoreOptions options_;
  JobSink sink_;
  CoreHooks hooks_;
  bool withholding_ = false;  // credit held back while the store writer is behind
  WindowStore store_;
  SessionTable sessions_;
  RunRegistry runs_;
  GroupCollector groups_;
  StepCombiner combiner_;
  std::map<std::pair<std::string, std::int64_t>, wire::ProtocolError> failed_steps_;  // sharded steps that failed, recent
  Clock::time_point last_heartbeat_{};
  RequestQueue requests_;
  bool accepting_ = true;
  Clock::time_point started_ = Clock::now();
  IngestStats stats_;
  OutputFeed feed_{""};  // OutputsRequests: numbered outputs, held requests
};

}  // namespace wsm::merger
