// `wsm bench ingest`: in one run, side by side on loopback TCP: raw ZeroMQ throughput for the
// chunk size (from one cache-resident buffer, and moving the checkpoints' own bytes), checkpoint
// ingest through the daemon (an in-process Server), and how long send_checkpoint blocks the
// trainer compared with a memcpy of the same tensors.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include "merger/daemon/freed_memory.h"
#include "merger/daemon/server.h"
#include "wsm/client/client.h"
#include "wsm/core/error.h"
#include "tools/commands.h"

namespace wsm::tools {
namespace {

using Clock = std::chrono::steady_clock;

struct IngestArgs {
  double size_mb = 256;   // checkpoint size
  double chunk_mb = 4;
  int checkpoints = 8;
  int tensors = 8;
  int repeats = 3;
  int ranks = 0;  // > 0: also the same bytes from this many ranks of a sharded job
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A DEALER connected to a ROUTER on loopback with the daemon's socket options (no high-water
// marks), handshaken so that the connection is up before timing. Each side has a context (an I/O
// thread) of its own, as a trainer and `wsm serve` do.
struct LoopbackPair {
  zmq::context_t receiver_ctx{1}, sender_ctx{1};
  zmq::socket_t router{receiver_ctx, zmq::socket_type::router}, dealer{sender_ctx, zmq::socket_type::dealer};
  LoopbackPair() {
    router.set(zmq::sockopt::rcvhwm, 0);
    router.bind("tcp://127.0.0.1:*");
    dealer.set(zmq::sockopt::sndhwm, 0);
    dealer.connect(router.get(zmq::sockopt::last_endpoint));
    dealer.send(zmq::str_buffer("hi"), zmq::send_flags::none);
    zmq::message_t id, m;
    (void)router.recv(id);
    (void)router.recv(m);
  }
  // Times `send` on a thread of its own against the receiving loop `receive`, which returns the
  // bytes it got; returns bytes per second.
  template <class Send, class Receive>
  double bytes_per_s(Send send, Receive receive) {
    const auto t0 = Clock::now();
    std::jthread sender(send);
    const std::size_t got = receive();
    const double s = seconds_since(t0);
    sender.join();
    return static_cast<double>(got) / s;
  }
};

// A zero-copy frame over bytes that outlive the send.
zmq::message_t unowned_frame(const std::byte* p, std::size_t n) {
  return zmq::message_t(const_cast<std::byte*>(p), n, nullptr, nullptr);
}

// Raw ZeroMQ: `total` bytes in `chunk` frames, all from one buffer (so the sender reads it from
// cache), each frame dropped on receipt: the transport at its best.
double raw_zmq_bytes_per_s(std::size_t chunk, std::size_t total) {
  LoopbackPair p;
  std::vector<std::byte> buf(chunk, std::byte{1});
  const std::size_t frames = std::max<std::size_t>(1, total / chunk);
  return p.bytes_per_s(
      [&] {
        for (std::size_t i = 0; i < frames; ++i) p.dealer.send(unowned_frame(buf.data(), buf.size()), zmq::send_flags::none);
      },
      [&] {
        std::size_t got = 0;
        zmq::message_t id, m;
        for (std::size_t i = 0; i < frames; ++i) {
          (void)p.router.recv(id);
          (void)p.router.recv(m);
          got += m.size();
        }
        return got;
      });
}

// Raw ZeroMQ moving the checkpoints' own bytes: frames pointing into the tensors (so the sender
// reads them from memory) and a receiver that holds each checkpoint's frames until the next one
// arrives, as a window does. What any transport of these bytes costs here, without checksums,
// credit or bookkeeping.
double raw_zmq_checkpoint_bytes_per_s(std::size_t chunk, const std::vector<TensorView>& views, int checkpoints) {
  LoopbackPair p;
  std::size_t frames_per_checkpoint = 0;
  for (const auto& v : views) frames_per_checkpoint += (v.data.size() + chunk - 1) / chunk;
  return p.bytes_per_s(
      [&] {
        for (int c = 0; c < checkpoints; ++c)
          for (const auto& v : views)
            for (std::size_t off = 0; off < v.data.size(); off += chunk)
              p.dealer.send(unowned_frame(v.data.data() + off, std::min(chunk, v.data.size() - off)), zmq::send_flags::none);
      },
      [&] {
        std::size_t got = 0;
        zmq::message_t id;
        std::vector<zmq::message_t> held;  // the checkpoint being received
        for (int c = 0; c < checkpoints; ++c) {
          held.clear();
          for (std::size_t i = 0; i < frames_per_checkpoint; ++i) {
            zmq::message_t frame;
            (void)p.router.recv(id);
            (void)p.router.recv(frame);
            got += frame.size();
            held.push_back(std::move(frame));
          }
        }
        return got;
      });
}

// The same checkpoints from `ranks` clients of one sharded job (protocol version 2), each holding a
// contiguous 1/ranks of every tensor and handing its buffers over: a node's ranks streaming to their
// daemon, which completes a step once all delivered. After a warm-up round, like the single client.
double sharded_ingest_bytes_per_s(const std::string& endpoint, const std::vector<TensorView>& views, int ranks,
                                  int checkpoints, std::size_t chunk, std::size_t bytes) {
  std::vector<std::unique_ptr<MergerClient>> clients;
  std::vector<std::vector<TensorView>> shares(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    ClientOptions co;
    co.endpoint = endpoint;
    co.run_id = "sharded";
    co.rank = r;
    co.world_size = co.local_world_size = ranks;
    co.chunk_bytes = chunk;
    co.queue_bytes = bytes * static_cast<std::size_t>(checkpoints) + 1;
    clients.push_back(std::make_unique<MergerClient>(co));
    for (const auto& v : views) {
      const std::int64_t n = v.shape[0], lo = n * r / ranks, hi = n * (r + 1) / ranks;
      shares[static_cast<std::size_t>(r)].push_back(
          {v.name, v.dtype, {hi - lo}, v.data.subspan(static_cast<std::size_t>(lo) * 4, static_cast<std::size_t>(hi - lo) * 4), v.shape, {lo}});
    }
  }
  const std::shared_ptr<const void> owner(&views, [](const void*) {});
  auto round = [&](int first) {
    for (int c = first; c < first + checkpoints; ++c)
      for (int r = 0; r < ranks; ++r) clients[static_cast<std::size_t>(r)]->send_checkpoint_owned(c, c, 1e-3, shares[static_cast<std::size_t>(r)], owner);
    for (auto& client : clients) client->flush();
  };
  round(1);
  const auto t0 = Clock::now();
  round(checkpoints + 1);
  return static_cast<double>(bytes) * checkpoints / seconds_since(t0);
}

void run_ingest(const IngestArgs& a) {
  spdlog::set_level(spdlog::level::warn);
  // As `wsm serve` does; the raw ZeroMQ baseline runs under the same settings.
  merger::keep_freed_memory(1ull << 31);
  const std::size_t total = static_cast<std::size_t>(a.size_mb * (1 << 20));
  const std::size_t chunk = static_cast<std::size_t>(a.chunk_mb * (1 << 20));
  if (total == 0 || chunk == 0 || a.tensors <= 0 || a.checkpoints <= 0) throw Error("bench ingest: sizes must be positive");
  const std::size_t per_tensor = total / static_cast<std::size_t>(a.tensors) / 4 * 4;

  std::vector<std::vector<float>> model(static_cast<std::size_t>(a.tensors), std::vector<float>(per_tensor / 4, 1.5f));
  std::vector<TensorView> views;
  for (std::size_t t = 0; t < model.size(); ++t)
    views.push_back({"t" + std::to_string(t), DType::f32, {static_cast<std::int64_t>(per_tensor / 4)},
                     {reinterpret_cast<const std::byte*>(model[t].data()), per_tensor}});
  const std::size_t bytes = per_tensor * model.size();

  fmt::print("wsm bench ingest: checkpoint {:.1f} MiB in {} tensors, chunk {:.2f} MiB, {} checkpoints x {} repeats\n",
             bytes / 1048576.0, a.tensors, chunk / 1048576.0, a.checkpoints, a.repeats);

  // memcpy of the same tensors into a warm buffer: the floor for any snapshot.
  std::vector<std::byte> dst(bytes);
  std::memset(dst.data(), 0, dst.size());
  std::vector<double> memcpy_s;
  for (int r = 0; r < a.checkpoints * a.repeats; ++r) {
    const auto t0 = Clock::now();
    std::size_t off = 0;
    for (const auto& v : views) {
      std::memcpy(dst.data() + off, v.data.data(), v.data.size());
      off += v.data.size();
    }
    memcpy_s.push_back(seconds_since(t0));
  }

  std::vector<double> raw, raw_ckpt, ingest, ingest_owned, blocks, sharded;
  for (int r = 0; r < a.repeats; ++r) {
    raw.push_back(raw_zmq_bytes_per_s(chunk, bytes * static_cast<std::size_t>(a.checkpoints)));
    raw_ckpt.push_back(raw_zmq_checkpoint_bytes_per_s(chunk, views, a.checkpoints));

    merger::ServerOptions o;
    o.listen = "tcp://127.0.0.1:*";
    o.core.out_dir = std::filesystem::temp_directory_path() / ("wsm-bench-ingest-" + std::to_string(::getpid()));
    o.core.emulations = merger::parse_emulations("linear@1");    // keeps two checkpoints
    o.core.every = 1ll << 62;                                    // ingest only
    o.core.running_sums = false;                                 // no sum updates either
    o.core.max_chunk_bytes = std::max<std::uint64_t>(chunk, 64ull << 20);
    o.core.store.memory_budget = 1ull << 40;
    merger::Server server(o);
    std::atomic<bool> stop{false};
    std::jthread serving([&] { server.run(stop); });

    ClientOptions co;
    co.endpoint = server.endpoint();
    co.chunk_bytes = chunk;
    co.queue_bytes = bytes * static_cast<std::size_t>(a.checkpoints) + 1;
    MergerClient client(co);
    // Warm-up round (connection, recycled buffers on both sides), not timed: the steady state of
    // a training run, where every checkpoint reuses the buffers of one that left the window.
    for (int c = 1; c <= a.checkpoints; ++c) client.send_checkpoint(c, c, 1e-3, views);
    client.flush();
    const auto t0 = Clock::now();
    for (int c = a.checkpoints + 1; c <= 2 * a.checkpoints; ++c) {
      const auto s0 = Clock::now();
      client.send_checkpoint(c, c, 1e-3, views);
      blocks.push_back(seconds_since(s0));
    }
    client.flush();
    ingest.push_back(static_cast<double>(bytes) * a.checkpoints / seconds_since(t0));
    // The same from buffers handed over (send_checkpoint_owned): no snapshot copy on these cores,
    // as for a trainer whose GPU already copies each checkpoint into host memory of its own.
    const std::shared_ptr<const void> owner(&model, [](const void*) {});
    const auto t1 = Clock::now();
    for (int c = 2 * a.checkpoints + 1; c <= 3 * a.checkpoints; ++c) client.send_checkpoint_owned(c, c, 1e-3, views, owner);
    client.flush();
    ingest_owned.push_back(static_cast<double>(bytes) * a.checkpoints / seconds_since(t1));
    client.close();
    if (a.ranks > 0) sharded.push_back(sharded_ingest_bytes_per_s(server.endpoint(), views, a.ranks, a.checkpoints, chunk, bytes));
    stop = true;
    serving.join();
    std::filesystem::remove_all(o.core.out_dir);
  }

  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // Ratios per repeat (raw and ingest measured next to each other), so drift between repeats on a
  // noisy machine does not enter the ratio; their median and range are printed.
  auto ratio = [&](const std::vector<double>& v, const std::vector<double>& base) {
    std::vector<double> r;
    for (std::size_t i = 0; i < v.size(); ++i) r.push_back(v[i] / base[i]);
    std::sort(r.begin(), r.end());
    return fmt::format("{:.2f}x ({:.2f}-{:.2f})", median(r), r.front(), r.back());
  };
  const double block = median(blocks), copy = median(memcpy_s);
  fmt::print("raw ZeroMQ, one buffer ({:.2f} MiB frames):  {:6.2f} GB/s   A: the transport at its best\n",
             chunk / 1048576.0, median(raw) / 1e9);
  fmt::print("raw ZeroMQ, the checkpoints' bytes:       {:6.2f} GB/s   B: sent from the tensors, held per checkpoint\n",
             median(raw_ckpt) / 1e9);
  fmt::print("ingest, buffers handed over (no snapshot):{:6.2f} GB/s   {} of A (target >= 0.8), {} of B\n",
             median(ingest_owned) / 1e9, ratio(ingest_owned, raw), ratio(ingest_owned, raw_ckpt));
  if (!sharded.empty())
    fmt::print("ingest, {} ranks of a sharded job (owned): {:6.2f} GB/s   {} of A, {} of the one-client line above\n", a.ranks,
               median(sharded) / 1e9, ratio(sharded, raw), ratio(sharded, ingest_owned));
  fmt::print("ingest with send_checkpoint (snapshots):  {:6.2f} GB/s   {} of A, {} of B\n", median(ingest) / 1e9,
             ratio(ingest, raw), ratio(ingest, raw_ckpt));
  fmt::print("send_checkpoint blocks (median, min):     {:6.2f} ms, {:.2f} ms (min: sender thread idle)\n", block * 1e3,
             *std::min_element(blocks.begin(), blocks.end()) * 1e3);
  fmt::print("memcpy of the same tensors (median):      {:6.2f} ms   blocking {:.2f}x memcpy (target <= ~1)\n", copy * 1e3,
             block / copy);
}

}  // namespace

void add_bench_ingest_command(CLI::App& bench) {
  auto args = std::make_shared<IngestArgs>();
  auto* cmd = bench.add_subcommand("ingest", "Checkpoint ingest vs raw ZeroMQ on loopback; send_checkpoint vs memcpy");
  cmd->add_option("--size-mb", args->size_mb, "Checkpoint size in MiB")->capture_default_str();
  cmd->add_option("--chunk-mb", args->chunk_mb, "Chunk (frame) size in MiB")->capture_default_str();
  cmd->add_option("--checkpoints", args->checkpoints, "Checkpoints per repeat")->capture_default_str();
  cmd->add_option("--tensors", args->tensors, "Tensors per checkpoint")->capture_default_str();
  cmd->add_option("--repeats", args->repeats, "Repeats (medians are printed)")->capture_default_str();
  cmd->add_option("--ranks", args->ranks,
                  "Also send the same bytes from N ranks of a sharded job, each holding 1/N of every tensor (0: off)")
      ->capture_default_str();
  cmd->footer("Example:\n  wsm bench ingest --size-mb 256 --chunk-mb 4 --checkpoints 8");
  cmd->callback([args] { run_ingest(*args); });
}

}  // namespace wsm::tools
