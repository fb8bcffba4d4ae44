#pragma once
// ZeroMQ CURVE for non-loopback binds: the server's secret key from a file, and an in-process ZAP
// handler (inproc://zeromq.zap.01) that admits only the client public keys listed in an allow file.
// Key files hold Z85 text (40 characters): bare, or in zcert form (secret-key = "...").
#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include <zmq.hpp>

namespace wsm::merger {

// The first 40-character Z85 key in the file (for zcert files: the one after `key_name =`).
std::string read_z85_key(const std::filesystem::path& path, const std::string& key_name = "secret-key");
// Every Z85 public key in the file, one per line ('#' comments, zcert public-key lines accepted).
std::set<std::string> read_allowed_keys(const std::filesystem::path& path);
std::string curve_public_from_secret(const std::string& secret_z85);

// Runs the ZAP handler on its own thread until destroyed. Must exist before the server socket binds.
class ZapHandler {
 public:
  ZapHandler(zmq::context_t& ctx, std::set<std::string> allowed_z85);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

 private:
  void loop();
  zmq::socket_t socket_;
  std::set<std::string> allowed_;
  std::atomic<bool> stop_{false};
  std::jthread thread_;
};

}  // namespace wsm::merger
