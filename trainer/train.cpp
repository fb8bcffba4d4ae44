#include "wsm/trainer/train.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include "wsm/client/client.h"
#include "wsm/core/error.h"
#include "wsm/core/file_name.h"
#include "wsm/schedules/schedule.h"
#include "trainer/backend.h"
#include "wsm/trainer/checkpoint_io.h"
#include "wsm/trainer/evaluate.h"
#include "trainer/layers_cpu.h"

namespace wsm::trainer {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

CheckpointMeta make_meta(const TrainOptions& o, const std::string& run_id, const Schedule& sched, std::int64_t step,
                         std::int64_t tokens, double lr, std::uint64_t seed, int B) {
  CheckpointMeta m;
  m.step = step;
  m.tokens = tokens;
  m.lr = lr;
  m.run_id = run_id;
  m.extra["train.schedule"] = sched.to_string();
  m.extra["train.seed"] = std::to_string(seed);
  m.extra["train.preset"] = o.preset;
  m.extra["train.batch_size"] = std::to_string(B);
  m.extra["train.data"] = o.data.empty() ? "austen" : o.data.string();
  return m;
}

}  // namespace

std::string format_eta(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

std::string state_file_name(std::int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "state_%08lld.h5", (long long)step);
  return name;
}

namespace {

struct TrainData {
  fs::path train_path, val_path;
  std::string train_text, val_text;
};

TrainData read_data(const TrainOptions& o) {
  TrainData d{o.data, o.val, {}, {}};
  if (d.train_path.empty()) {
    const auto corpus = default_corpus(o.corpus_root.empty() ? fs::current_path() : o.corpus_root);
    d.train_path = corpus.train;
    if (d.val_path.empty()) d.val_path = corpus.val;
  }
  d.train_text = read_text_file(d.train_path);
  if (!d.val_path.empty()) d.val_text = read_text_file(d.val_path);
  return d;
}

// Fresh weights, out/state.h5 (--resume) or another run's kept state (--from-state).
TrainState initial_state(const TrainOptions& o, const Preset& pre, const TrainData& d) {
  if (o.resume && !o.from_state.empty()) throw Error("wsm train: --resume and --from-state exclude each other");
  const fs::path from = o.resume ? o.out / "state.h5" : o.from_state;
  if (!from.empty()) {
    if (!fs::exists(from))
      throw Error(from.string() + (o.resume ? ": no resume state (run without --resume first)" : ": no such state file"));
    TrainState st = load_state(from);
    spdlog::info("{} from {} at step {}", o.resume ? "resuming" : "branching", from.string(), st.step);
    if (!o.from_state.empty() && st.seed != o.seed)
      spdlog::info("branch keeps the state's seed {} (batches are a function of seed and step)", st.seed);
    return st;
  }
  TrainState st;
  st.model.vocab = Vocab::from_texts({&d.train_text, &d.val_text});
  st.model.config = pre.model;
  st.model.config.vocab_size = st.model.vocab.size();
  st.model.params = init_params(st.model.config, o.seed);
  st.seed = o.seed;
  return st;
}

void check_batch_size(const TrainOptions& o, const TrainState& st, int B) {
  const auto& extra = st.model.meta.extra;
  if ((o.resume || !o.from_state.empty()) && extra.contains("train.batch_size") &&
      std::to_string(B) != extra.at("train.batch_size"))
    throw Error((o.resume ? (o.out / "state.h5").string() : o.from_state.string()) + ": saved with batch size " +
                extra.at("train.batch_size") + ", continued with " + std::to_string(B));
}

Schedule run_schedule(const TrainOptions& o, const Preset& pre) {
  std::string text = o.schedule;
  if (text.empty()) text = "warmup=" + std::to_string(pre.warmup) + ",stable,peak=" + std::to_string(pre.peak_lr);
  Schedule sched = parse_schedule(text);
  if (sched.needs_total()) sched = sched.with_total(o.steps);
  return sched;
}

std::unique_ptr<Backend> make_backend(const TrainOptions& o, const GptConfig& cfg) {
  switch (o.device) {
    case Device::cpu: return make_cpu_backend(cfg, o.adamw, o.clip);
    case Device::cuda: return make_cuda_backend(cfg, o.adamw, o.clip);
  }
  throw Error("unknown training device");
}

void send_to_merger(MergerClient& merger, const GptConfig& cfg, const TrainState& st) {
  // The client copies the tensors and streams them from its own thread: the loop goes on.
  std::vector<TensorView> views;
  for (const auto& s : param_layout(cfg))
    views.push_back({s.name, DType::f32, s.shape,
                     std::as_bytes(std::span<const float>(st.model.params.data() + s.offset, s.numel))});
  merger.send_checkpoint(*st.model.meta.step, *st.model.meta.tokens, *st.model.meta.lr, views);
}

void print_progress(std::int64_t done, std::int64_t total, double mean_loss, double lr, double tokens_per_s,
                    double seconds_per_step) {
  std::printf("step %6lld/%lld %5.1f%%  loss %.4f  lr %.3e  tok/s %.0f  eta %s\n", (long long)done,
              (long long)total, 100.0 * double(done) / double(total), mean_loss, lr, tokens_per_s,
              format_eta(double(total - done) * seconds_per_step).c_str());
  std::fflush(stdout);
}

void report_validation(TrainSummary& sum, const TrainOptions& o, const GptConfig& cfg, const TrainState& st,
                       const std::vector<std::int32_t>& val_tokens, const fs::path& val_path) {
  GptCpu<float> model(cfg);
  model.params() = st.model.params;
  const EvalResult ev = evaluate(model, val_tokens, o.eval_positions);
  sum.val_loss = ev.loss;
  sum.val_bpc = ev.bits_per_char;
  std::printf("validation: loss %.4f nats, %.4f bits/char over %lld positions of %s\n", ev.loss, ev.bits_per_char,
              (long long)ev.positions, val_path.string().c_str());
}

// Everything a run needs before its first step: data, state, model shape, schedule, backend, merger.
struct Run {
  TrainData data;
  Preset pre;
  TrainState st;
  GptConfig cfg;
  int B = 0, T = 0;
  std::vector<std::int32_t> train_tokens, val_tokens;
  Schedule sched;
  std::string run_id;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<MergerClient> merger;
};

Run prepare_run(const TrainOptions& o) {
  if (o.out.empty()) throw Error("wsm train: --out DIR is required");
  if (o.every <= 0) throw Error("wsm train: --every must be > 0");
  cpu::set_num_threads(std::max(1, o.threads));
  fs::create_directories(o.out);
  Run r;
  r.data = read_data(o);
  r.pre = preset(o.preset);
  r.st = initial_state(o, r.pre, r.data);
  r.cfg = r.st.model.config;
  r.B = o.batch_size > 0 ? o.batch_size : r.pre.batch_size;
  r.T = r.cfg.block_size;
  check_batch_size(o, r.st, r.B);
  r.train_tokens = r.st.model.vocab.encode(r.data.train_text, r.data.train_path.string());
  if (!r.data.val_text.empty()) r.val_tokens = r.st.model.vocab.encode(r.data.val_text, r.data.val_path.string());
  r.sched = run_schedule(o, r.pre);
  r.run_id = o.run_id.empty() ? folder_name(o.out) : o.run_id;  // "run/" is "run"
  r.backend = make_backend(o, r.cfg);
  r.backend->upload(r.st.model.params, r.st.optim);
  if (!o.merger.empty()) {
    ClientOptions co;
    co.endpoint = o.merger;
    co.run_id = r.run_id;
    co.policy = o.merger_policy;
    // The model config and vocabulary, so the merger's outputs are evaluable on their own.
    co.metadata = config_to_meta(r.cfg);
    co.metadata[kVocabKey] = r.st.model.vocab.to_hex();
    r.merger = std::make_unique<MergerClient>(co);
  }
  spdlog::info("train: preset {} ({} params, {} layers, width {}, ctx {}, vocab {}), batch {}x{}, device {}, "
               "schedule {}, steps {} -> {}, data {} ({} tokens)",
               o.preset, num_params(r.cfg), r.cfg.n_layer, r.cfg.n_embd, r.cfg.block_size, r.cfg.vocab_size, r.B,
               r.T, r.backend->name(), r.sched.to_string(), r.st.step, o.steps, r.data.train_path.string(),
               r.train_tokens.size());
  return r;
}

// The steps since the last checkpoint, for its progress line.
struct Interval {
  Clock::time_point start = Clock::now();
  std::int64_t steps = 0;
  double loss = 0;
};

// After step `done`: a kept branch state when asked for, and at checkpoints the progress line, the
// merger upload, step_<N>.h5 and state.h5.
void save_outputs(Run& r, const TrainOptions& o, std::int64_t done, double lr, bool checkpoint, bool keep,
                  Interval& interval) {
  r.backend->download(r.st.model.params, r.st.optim);
  r.st.step = done;
  r.st.model.meta = make_meta(o, r.run_id, r.sched, done, done * std::int64_t(r.B) * r.T, lr, r.st.seed, r.B);
  if (keep) save_state(o.out / state_file_name(done), r.st);
  if (!checkpoint) return;
  const double secs = std::chrono::duration<double>(Clock::now() - interval.start).count();
  print_progress(done, o.steps, interval.loss / double(interval.steps), lr,
                 double(interval.steps) * r.B * r.T / std::max(secs, 1e-9), secs / double(interval.steps));
  if (r.merger) send_to_merger(*r.merger, r.cfg, r.st);
  if (o.save_checkpoints)
    save_model(o.out / checkpoint_file_name(done), r.cfg, r.st.model.vocab, r.st.model.params, r.st.model.meta);
  save_state(o.out / "state.h5", r.st);
  interval = Interval{};
}

// Steps from the state's step up to o.steps; returns the number of steps run.
std::int64_t run_steps(Run& r, const TrainOptions& o, TrainSummary& sum) {
  const auto keep_state = [&](std::int64_t step) {
    return std::find(o.keep_states.begin(), o.keep_states.end(), step) != o.keep_states.end();
  };
  Interval interval;
  std::int64_t steps = 0;
  for (std::int64_t step = r.st.step; step < o.steps; ++step) {
    const double lr = r.sched.lr_at(step);
    const StepResult res = r.backend->step(batch_at(r.train_tokens, r.st.seed, step, r.B, r.T), r.B, r.T, lr);
    if (!std::isfinite(res.loss))
      throw Error("training diverged at step " + std::to_string(step) + " (loss not finite)");
    sum.last_loss = res.loss;
    interval.loss += res.loss;
    ++interval.steps;
    ++steps;
    const std::int64_t done = step + 1;
    const bool checkpoint = done % o.every == 0 || done == o.steps, keep = keep_state(done);
    if (checkpoint || keep) save_outputs(r, o, done, lr, checkpoint, keep, interval);
  }
  return steps;
}

// Checkpoints are on disk either way: flush the merger, evaluate, then report a merger failure.
void finish_run(Run& r, const TrainOptions& o, TrainSummary& sum) {
  std::string merger_error;
  if (r.merger) {
    try {
      r.merger->flush();
    } catch (const std::exception& e) {
      merger_error = e.what();
      spdlog::error("merger {}: {}", o.merger, merger_error);
    }
  }
  if (o.eval_positions > 0 && !r.val_tokens.empty()) {
    r.backend->download(r.st.model.params, r.st.optim);
    report_validation(sum, o, r.cfg, r.st, r.val_tokens, r.data.val_path);
  }
  if (!merger_error.empty())
    throw Error("merger " + o.merger + ": " + merger_error + " (checkpoints are in " + o.out.string() + ")");
}

}  // namespace

TrainSummary train(const TrainOptions& o) {
  Run r = prepare_run(o);
  TrainSummary sum;
  const auto start = Clock::now();
  const std::int64_t steps = run_steps(r, o, sum);
  sum.step = r.st.step;
  sum.tokens_per_s =
      double(steps) * r.B * r.T / std::max(std::chrono::duration<double>(Clock::now() - start).count(), 1e-9);
  finish_run(r, o, sum);
  return sum;
}

}  // namespace wsm::trainer
