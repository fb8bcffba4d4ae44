#include "merger/daemon/curve_auth.h"

#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <vector>

#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include "wsm/core/error.h"

namespace wsm::merger {

namespace {
const std::regex kZ85Key(R"([0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40})");

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read key file " + path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string key_in_line(const std::string& line) {
  std::string body = line;
  if (auto q = body.find('"'); q != std::string::npos) {
    auto q2 = body.find('"', q + 1);
    body = body.substr(q + 1, q2 == std::string::npos ? std::string::npos : q2 - q - 1);
  }
  while (!body.empty() && std::isspace(static_cast<unsigned char>(body.back()))) body.pop_back();
  while (!body.empty() && std::isspace(static_cast<unsigned char>(body.front()))) body.erase(body.begin());
  return std::regex_match(body, kZ85Key) ? body : std::string();
}
}  // namespace

std::string read_z85_key(const std::filesystem::path& path, const std::string& key_name) {
  std::istringstream in(slurp(path));
  std::string line, first_bare;
  while (std::getline(in, line)) {
    if (line.find('#') == 0) continue;
    const auto key = key_in_line(line);
    if (key.empty()) continue;
    const bool quoted = line.find('"') != std::string::npos;  // zcert: name = "key"
    if (quoted && line.find(key_name) != std::string::npos) return key;
    if (!quoted && first_bare.empty()) first_bare = key;
  }
  if (first_bare.empty()) throw Error(path.string() + ": no 40-character Z85 key found");
  return first_bare;
}

std::set<std::string> read_allowed_keys(const std::filesystem::path& path) {
  std::istringstream in(slurp(path));
  std::set<std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find('#') == 0 || line.find("secret-key") != std::string::npos) continue;
    if (auto key = key_in_line(line); !key.empty()) keys.insert(key);
  }
  if (keys.empty()) throw Error(path.string() + ": no client public keys (Z85, one per line)");
  return keys;
}

std::string curve_public_from_secret(const std::string& secret_z85) {
  char pub[41] = {};
  if (zmq_curve_public(pub, secret_z85.c_str()) != 0) throw Error("invalid CURVE secret key (expected 40 Z85 characters)");
  return pub;
}

ZapHandler::ZapHandler(zmq::context_t& ctx, std::set<std::string> allowed)
    : socket_(ctx, zmq::socket_type::rep), allowed_(std::move(allowed)) {
  socket_.bind("inproc://zeromq.zap.01");
  thread_ = std::jthread([this] { loop(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::loop() {
  while (!stop_) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
    } catch (const zmq::error_t&) {
      continue;  // EINTR
    }
    std::vector<zmq::message_t> req;
    (void)zmq::recv_multipart(socket_, std::back_inserter(req), zmq::recv_flags::dontwait);
    // ZAP request: version, request id, domain, address, identity, mechanism, credentials...
    std::string status = "400", text = "malformed ZAP request", user;
    if (req.size() >= 6) {
      const auto mechanism = req[5].to_string();
      if (mechanism == "CURVE" && req.size() >= 7 && req[6].size() == 32) {
        char z85[41] = {};
        zmq_z85_encode(z85, static_cast<const std::uint8_t*>(req[6].data()), 32);
        if (allowed_.count(z85)) {
          status = "200", text = "OK", user = z85;
        } else {
          status = "400", text = "client key not allowed";
          spdlog::warn("curve: refused client key {} from {}", z85, req[3].to_string());
        }
      } else {
        text = "CURVE required";
      }
    }
    const std::string version = "1.0";
    socket_.send(zmq::buffer(version), zmq::send_flags::sndmore);
    socket_.send(req.size() > 1 ? zmq::message_t(req[1].data(), req[1].size()) : zmq::message_t(), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(status), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(text), zmq::send_flags::sndmore);
    socket_.send(zmq::buffer(user), zmq::send_flags::sndmore);
    socket_.send(zmq::message_t(), zmq::send_flags::none);
  }
}

}  // namespace wsm::merger
