#pragma once
// C++ client for the merger daemon (`wsm serve`). send_checkpoint() returns quickly: the tensors
// are copied into a buffer and a background thread streams them over ZeroMQ, so training never waits
// on the network. The queue of snapshots is bounded (ClientOptions::queue_bytes); when it is full,
// send_checkpoint waits for room and logs a warning (policy "wait"), so memory stays bounded.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "protocol/checkpoint.h"

namespace wsm {

struct TensorView {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
};

struct ClientOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::string run_id = "run";
  std::size_t chunk_bytes = 4 << 20;
  std::size_t queue_bytes = 1ull << 30;  // snapshots waiting to be sent
  int reconnect_timeout_ms = 30000;      // how long to retry a checkpoint across merger restarts
};

class MergerClient {
 public:
  explicit MergerClient(ClientOptions options);
  ~MergerClient();  // flushes, then closes
  MergerClient(const MergerClient&) = delete;
  MergerClient& operator=(const MergerClient&) = delete;

  void send_checkpoint(std::int64_t step, std::int64_t tokens, double lr, std::span<const TensorView> tensors);
  void flush();   // blocks until every queued checkpoint is acknowledged; throws on a merger error
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsm
