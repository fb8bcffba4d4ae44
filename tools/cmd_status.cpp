// `wsm status`: asks a running `wsm serve` for its window, pending outputs, traffic and rates.
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>
#include <zmq.hpp>

#include "merger/daemon/curve_auth.h"
#include "wsm/core/error.h"
#include "wsm/wire/wire.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace wsm::tools {
namespace {

struct StatusArgs {
  std::string connect = "tcp://127.0.0.1:5555";
  bool json = false;
  int timeout_ms = 3000;
  std::string curve_server_key, curve_key;
  bool higher_is_better = false;
};

// The best emulation of each run at its newest scored step, among the newest scores (one per label).
void print_best(const v1::StatusReply& r, bool higher_is_better) {
  std::map<std::string, const v1::OutputScore*> best;  // run -> entry
  for (const auto& s : r.scores()) {
    if (!s.has_score() || s.label() == "raw" || !std::isfinite(s.score())) continue;
    auto& b = best[s.run_id()];
    if (!b || s.step() > b->step() ||
        (s.step() == b->step() && (higher_is_better ? s.score() > b->score() : s.score() < b->score())))
      b = &s;
  }
  for (const auto& [run, s] : best)
    fmt::print("best emulation of run {} at step {}: {} ({:.6g}{})\n", run, s->step(), s->label(), s->score(),
               higher_is_better ? ", higher is better" : ", lower is better");
}

void print_text(const v1::StatusReply& r, bool higher_is_better) {
  fmt::print("merger {} (wsm {}), up {:.0f} s, {} peers\n", r.server_id(), r.version(), r.uptime_s(), r.peers());
  fmt::print("received {} checkpoints ({} rejected), {}; now {}/s, {:.1f} checkpoints/min\n", r.checkpoints_received(),
             r.checkpoints_rejected(), human_bytes(static_cast<double>(r.bytes_received())), human_bytes(r.bytes_per_s()),
             r.checkpoints_per_min());
  fmt::print("outputs written: {}; every {} steps; window RAM {} of {}\n", r.outputs_written(), r.every(),
             human_bytes(static_cast<double>(r.memory_bytes())), human_bytes(static_cast<double>(r.memory_budget())));
  fmt::print("running sums: {}; their f64 state {} (counted against the memory budget); store backlog {}\n",
             r.running_sums() ? "on" : "off", human_bytes(static_cast<double>(r.running_sum_bytes())),
             human_bytes(static_cast<double>(r.store_backlog_bytes())));
  fmt::print("emulations:\n");
  for (const auto& e : r.emulations()) fmt::print("  {:<28} {} over {} {}\n", e.label(), e.spec(), e.window(), e.axis());
  fmt::print("window ({} checkpoints):\n", r.window_size());
  for (const auto& w : r.window())
    fmt::print("  run {:<12} step {:>10} tokens {:>14} {:>12} {}{}\n", w.run_id(), w.step(), w.tokens(),
               human_bytes(static_cast<double>(w.bytes())), w.in_memory() ? "ram" : "", w.on_disk() ? " disk" : "");
  fmt::print("pending outputs: {}\n", r.pending_size());
  for (const auto& p : r.pending())
    fmt::print("  run {:<12} step {:>10} {} ({} outputs)\n", p.run_id(), p.step(), p.running() ? "writing" : "queued",
               p.labels_size());
  if (r.scores_size() == 0 && r.evals_pending() == 0) return;
  fmt::print("newest scores ({} evaluations pending):\n", r.evals_pending());
  for (const auto& s : r.scores())
    fmt::print("  run {:<12} {:<24} step {:>10} {}\n", s.run_id(), s.label(), s.step(),
               s.has_score() ? fmt::format("{:.6g}", s.score()) : "failed: " + s.error());
  print_best(r, higher_is_better);
}

void run_status(const StatusArgs& a) {
  zmq::context_t ctx(1);
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  if (!a.curve_server_key.empty()) {
    s.set(zmq::sockopt::curve_serverkey, merger::read_z85_key(a.curve_server_key, "public-key"));
    s.set(zmq::sockopt::curve_publickey, merger::read_z85_key(a.curve_key, "public-key"));
    s.set(zmq::sockopt::curve_secretkey, merger::read_z85_key(a.curve_key, "secret-key"));
  }
  s.connect(a.connect);
  auto req = wire::envelope();
  req.mutable_status_request();
  wire::send(s, "", req);
  auto r = wire::receive(s, wire::SocketRole::dealer, a.timeout_ms);
  if (!r) throw Error("no status reply from " + a.connect + " within " + std::to_string(a.timeout_ms) + " ms");
  if (r->fault) throw Error("bad reply from " + a.connect + ": " + r->fault->what());
  const auto& env = r->message->envelope;
  if (env.has_error()) throw Error("merger at " + a.connect + ": " + env.error().message());
  if (!env.has_status_reply()) throw Error("unexpected reply from " + a.connect);
  if (a.json) {
    std::string out;
    google::protobuf::util::JsonPrintOptions opts;
    opts.add_whitespace = true;
    opts.always_print_primitive_fields = true;
    opts.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(env.status_reply(), &out, opts);
    std::fputs(out.c_str(), stdout);
  } else {
    print_text(env.status_reply(), a.higher_is_better);
  }
}

}  // namespace

void add_status_command(CLI::App& app) {
  auto args = std::make_shared<StatusArgs>();
  auto* cmd = app.add_subcommand("status", "Ask a running merger (wsm serve) for its status");
  cmd->add_option("--connect", args->connect, "Endpoint of the merger")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print JSON (field names as in protocol/wire/wsm.proto StatusReply)");
  cmd->add_flag("--higher-is-better", args->higher_is_better,
                "Scores rank highest first when naming each run's best emulation (as `wsm serve --higher-is-better`)");
  cmd->add_option("--timeout-ms", args->timeout_ms, "How long to wait for the reply")->capture_default_str();
  cmd->add_option("--curve-server-key", args->curve_server_key, "Merger's CURVE public key file (CURVE only)");
  cmd->add_option("--curve-key", args->curve_key, "This client's CURVE key file, zcert form (public-key, secret-key)");
  cmd->footer("Example:\n  wsm status --connect tcp://127.0.0.1:5555\n  wsm status --connect tcp://127.0.0.1:5555 --json | jq .window");
  cmd->callback([args] { run_status(*args); });
}

}  // namespace wsm::tools
