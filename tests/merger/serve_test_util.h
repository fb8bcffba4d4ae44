#pragma once
// Shared by the merger daemon tests: a Server on an ephemeral loopback port in a thread, raw
// DEALER peers, deterministic tensors, and the double-precision reference merge.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "merger/daemon/server.h"
#include "wsm/schedules/decay.h"
#include "wsm/client/client.h"
#include "wsm/wire/wire.h"

namespace wsm::test {

inline std::filesystem::path temp_dir(const std::string& name) {
  static std::atomic<int> counter{0};
  auto p = std::filesystem::temp_directory_path() /
           ("wsm-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// A value every implementation can compute: the same formula is used by tests/merger/*.py.
inline float tensor_value(int tensor, std::int64_t step, std::uint64_t i) {
  return static_cast<float>(std::sin(0.001 * static_cast<double>(i) * (tensor + 1) + 0.01 * static_cast<double>(step)) +
                            0.001 * static_cast<double>(step));
}

struct OwnedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

inline std::vector<OwnedTensor> make_model(std::int64_t step, std::vector<std::vector<std::int64_t>> shapes) {
  std::vector<OwnedTensor> out;
  for (std::size_t t = 0; t < shapes.size(); ++t) {
    OwnedTensor o{"layer" + std::to_string(t) + ".weight", shapes[t], {}};
    std::uint64_t n = 1;
    for (auto d : shapes[t]) n *= static_cast<std::uint64_t>(d);
    o.values.resize(n);
    for (std::uint64_t i = 0; i < n; ++i) o.values[i] = tensor_value(static_cast<int>(t), step, i);
    out.push_back(std::move(o));
  }
  return out;
}

inline std::vector<TensorView> views(const std::vector<OwnedTensor>& model) {
  std::vector<TensorView> v;
  for (const auto& t : model)
    v.push_back({t.name, DType::f32, t.shape,
                 {reinterpret_cast<const std::byte*>(t.values.data()), t.values.size() * sizeof(float)}});
  return v;
}

class ServerThread {
 public:
  explicit ServerThread(merger::ServerOptions o) : server_(std::make_unique<merger::Server>(std::move(o))) {
    thread_ = std::thread([this] { server_->run(stop_); });
  }
  ~ServerThread() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::string endpoint() const { return server_->endpoint(); }
  merger::Server& server() { return *server_; }

 private:
  std::atomic<bool> stop_{false};
  std::unique_ptr<merger::Server> server_;
  std::thread thread_;
};

inline merger::ServerOptions server_options(const std::filesystem::path& out, const std::string& emulate, std::int64_t every) {
  merger::ServerOptions o;
  o.listen = "tcp://127.0.0.1:*";
  o.core.out_dir = out;
  o.core.emulations = merger::parse_emulations(emulate);
  o.core.every = every;
  return o;
}

// A raw DEALER that speaks the wire protocol by hand, to misbehave on purpose.
class RawPeer {
 public:
  explicit RawPeer(const std::string& endpoint) : socket_(ctx_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
  }
  void send(const v1::Envelope& env) { wire::send(socket_, "", env); }
  void send(const v1::Envelope& env, std::span<const std::byte> payload) {
    wire::send(socket_, "", env, zmq::message_t(payload.data(), payload.size()));
  }
  void send_frames(const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i)
      socket_.send(zmq::buffer(frames[i]), i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  // The next message that is not a Credit, within timeout.
  std::optional<v1::Envelope> next(int timeout_ms = 3000) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      if (left <= 0) return std::nullopt;
      auto r = wire::receive(socket_, wire::SocketRole::dealer, static_cast<int>(left));
      if (!r || !r->message) continue;
      if (r->message->envelope.has_credit()) continue;
      return r->message->envelope;
    }
  }
  zmq::socket_t& socket() { return socket_; }

 private:
  zmq::context_t ctx_{1};
  zmq::socket_t socket_;
};

// The daemon's StatusReply, asked from a fresh socket.
inline v1::StatusReply status_of(const std::string& endpoint) {
  RawPeer peer(endpoint);
  auto st = wire::envelope();
  st.mutable_status_request();
  peer.send(st);
  auto r = peer.next();
  if (!r || !r->has_status_reply()) throw Error("no status reply");
  return r->status_reply();
}

inline v1::Envelope hello(const std::string& run, const std::vector<OwnedTensor>& model, std::uint32_t version = 1) {
  auto env = wire::envelope();
  auto* h = env.mutable_hello();
  h->set_protocol_version(version);
  h->set_run_id(run);
  for (const auto& t : model) {
    auto* s = h->add_manifest();
    s->set_name(t.name);
    s->set_dtype("f32");
    for (auto d : t.shape) s->add_shape(d);
  }
  return env;
}

inline v1::Envelope merge_request(std::uint64_t id, const std::string& run, const std::string& shape,
                                  const std::string& window) {
  auto env = wire::envelope();
  auto* r = env.mutable_merge_request();
  r->set_request_id(id);
  r->set_run_id(run);
  r->set_shape(shape);
  r->set_window(window);
  return env;
}

inline v1::Envelope begin(std::int64_t step) {
  auto env = wire::envelope();
  env.mutable_begin()->set_step(step);
  // 1000 tokens a step; hostile tests send absurd steps, so the product must not overflow.
  std::int64_t tokens = 0;
  if (__builtin_mul_overflow(step, std::int64_t(1000), &tokens)) tokens = step;
  env.mutable_begin()->set_tokens(tokens);
  env.mutable_begin()->set_lr(1e-3);
  return env;
}

inline v1::Envelope chunk(std::int64_t step, const std::string& name, std::uint64_t offset, std::span<const std::byte> bytes) {
  auto env = wire::envelope();
  auto* c = env.mutable_chunk();
  c->set_step(step);
  c->set_name(name);
  c->set_offset(offset);
  c->set_length(bytes.size());
  c->set_checksum(wire::checksum(bytes));
  return env;
}

inline std::span<const std::byte> bytes_of(const OwnedTensor& t) {
  return {reinterpret_cast<const std::byte*>(t.values.data()), t.values.size() * sizeof(float)};
}

inline v1::Envelope end(std::int64_t step, const std::vector<OwnedTensor>& model) {
  // Matches test::chunk: one chunk per tensor.
  wire::ChecksumChain s;
  std::uint64_t total = 0;
  for (const auto& t : model) {
    s.add(wire::checksum(bytes_of(t)));
    total += bytes_of(t).size();
  }
  auto env = wire::envelope();
  env.mutable_end()->set_step(step);
  env.mutable_end()->set_total_bytes(total);
  env.mutable_end()->set_checksum(s.digest());
  return env;
}

// A loopback endpoint whose port was free a moment ago (bound, then released), for a `wsm serve`
// process that must be told where to listen. The port lies below the kernel's ephemeral range: a port from that range (what a `:*` bind or a
// client's connect gets) could be handed to another test's socket between this check and the
// child's bind, which then fails with "Address already in use" (seen in parallel CTest runs).
inline std::string free_loopback_endpoint() {
  int ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  std::uniform_int_distribution<int> port(10000, std::max(11000, ephemeral_low) - 1);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port(rng));
    try {
      zmq::context_t ctx(1);
      zmq::socket_t s(ctx, zmq::socket_type::router);
      s.set(zmq::sockopt::linger, 0);
      s.bind(endpoint);
      return endpoint;
    } catch (const zmq::error_t&) {
      // in use: try another
    }
  }
  throw std::runtime_error("no free loopback port below the ephemeral range");
}

// Starts the built `wsm serve --listen ENDPOINT ARGS...` as a child process, its stdout and stderr
// in DIR/serve.log. Returns the child's pid (the caller signals and reaps it).
inline pid_t spawn_wsm_serve(const std::filesystem::path& dir, const std::string& endpoint,
                             const std::vector<std::string>& args) {
  const std::string wsm = std::string(WSM_BINARY_DIR) + "/wsm", log = (dir / "serve.log").string();
  std::vector<std::string> words = {"wsm", "serve", "--listen", endpoint};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;  // built before fork: the child only redirects and execs
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::freopen(log.c_str(), "w", stderr);
    std::freopen(log.c_str(), "a", stdout);
    ::execv(wsm.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

// SIGTERM to a spawn_wsm_serve child, reaped within 15 s (else SIGKILL): true when it exited 0.
inline bool stop_wsm_serve(pid_t pid) {
  ::kill(pid, SIGTERM);
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return false;
}

// What select_window gives the output record `rec` over the steps sent up to its step: the source
// steps and weights its record and its tensors are checked against.
struct ExpectedWindow {
  std::vector<std::int64_t> sources;
  std::vector<double> weights;
};
inline ExpectedWindow expected_window(const nlohmann::json& rec, const std::vector<std::int64_t>& all_steps) {
  const auto spec = parse_merge_spec(rec["spec"].get<std::string>());
  std::vector<std::int64_t> positions;
  for (auto s : all_steps)
    if (s <= rec["step"].get<std::int64_t>()) positions.push_back(s);
  const auto sel = select_window(spec, positions, rec["window"].get<std::int64_t>());
  ExpectedWindow e{{}, sel.weights};
  for (auto i : sel.indices) e.sources.push_back(positions[i]);
  return e;
}

template <class Pred>
bool wait_for(Pred pred, int timeout_ms = 10000) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

}  // namespace wsm::test
