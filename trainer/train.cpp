#include "trainer/train.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include "protocol/client.h"
#include "protocol/error.h"
#include "schedules/schedule.h"
#include "trainer/backend.h"
#include "trainer/checkpoint_io.h"
#include "trainer/evaluate.h"
#include "trainer/layers_cpu.h"

#ifndef WSM_REPO_ROOT
#define WSM_REPO_ROOT "."
#endif

namespace wsm::trainer {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

std::string format_eta(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

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

fs::path repo_root_for_data() {
  if (fs::exists("data/cache/austen/train.txt")) return fs::current_path();
  const fs::path root = WSM_REPO_ROOT;
  if (!fs::exists(root / "data/cache/austen/train.txt") && fs::exists(root / "tools/fetch-austen.py")) {
    spdlog::info("Austen corpus not cached yet: running tools/fetch-austen.py (apt-get download + decode)");
    const std::string cmd = "python3 '" + (root / "tools/fetch-austen.py").string() + "' --out '" +
                            (root / "data/cache").string() + "'";
    if (std::system(cmd.c_str()) != 0) spdlog::warn("fetch-austen.py failed");
  }
  return root;
}

TrainSummary train(const TrainOptions& o) {
  if (o.out.empty()) throw Error("wsm train: --out DIR is required");
  if (o.every <= 0) throw Error("wsm train: --every must be > 0");
  cpu::set_num_threads(std::max(1, o.threads));
  fs::create_directories(o.out);
  const fs::path state_path = o.out / "state.h5";

  // Data
  fs::path train_path = o.data, val_path = o.val;
  if (train_path.empty()) {
    const auto corpus = default_corpus(repo_root_for_data());
    train_path = corpus.train;
    if (val_path.empty()) val_path = corpus.val;
  }
  const std::string train_text = read_text_file(train_path);
  const std::string val_text = val_path.empty() ? std::string() : read_text_file(val_path);

  // Model, optimizer state, step: fresh or from state.h5
  Preset pre = preset(o.preset);
  TrainState st;
  if (o.resume) {
    if (!fs::exists(state_path)) throw Error(state_path.string() + ": no resume state (run without --resume first)");
    st = load_state(state_path);
    spdlog::info("resuming from {} at step {}", state_path.string(), st.step);
  } else {
    st.model.vocab = Vocab::from_texts({&train_text, &val_text});
    st.model.config = pre.model;
    st.model.config.vocab_size = st.model.vocab.size();
    st.model.params = init_params(st.model.config, o.seed);
    st.seed = o.seed;
  }
  const GptConfig cfg = st.model.config;
  const int B = o.batch_size > 0 ? o.batch_size : pre.batch_size, T = cfg.block_size;
  if (o.resume && st.model.meta.extra.contains("train.batch_size") &&
      std::to_string(B) != st.model.meta.extra.at("train.batch_size"))
    throw Error(state_path.string() + ": saved with batch size " + st.model.meta.extra.at("train.batch_size") +
                ", resumed with " + std::to_string(B));
  const auto train_tokens = st.model.vocab.encode(train_text, train_path.string());
  const auto val_tokens = val_text.empty() ? std::vector<std::int32_t>{} : st.model.vocab.encode(val_text, val_path.string());

  std::string sched_text = o.schedule;
  if (sched_text.empty())
    sched_text = "warmup=" + std::to_string(pre.warmup) + ",stable,peak=" + std::to_string(pre.peak_lr);
  Schedule sched = parse_schedule(sched_text);
  if (sched.needs_total()) sched = sched.with_total(o.steps);
  const std::string run_id = o.run_id.empty() ? fs::absolute(o.out).filename().string() : o.run_id;

  std::unique_ptr<Backend> backend = o.device == "cpu"    ? make_cpu_backend(cfg, o.adamw, o.clip)
                                     : o.device == "cuda" ? make_cuda_backend(cfg, o.adamw, o.clip)
                                                          : throw Error("--device must be cpu or cuda, not '" + o.device + "'");
  backend->upload(st.model.params, st.optim);

  std::unique_ptr<MergerClient> merger;
  if (!o.merger.empty()) {
    ClientOptions co;
    co.endpoint = o.merger;
    co.run_id = run_id;
    merger = std::make_unique<MergerClient>(co);
  }
  const auto layout = param_layout(cfg);

  spdlog::info("train: preset {} ({} params, {} layers, width {}, ctx {}, vocab {}), batch {}x{}, device {}, "
               "schedule {}, steps {} -> {}, data {} ({} tokens)",
               o.preset, num_params(cfg), cfg.n_layer, cfg.n_embd, cfg.block_size, cfg.vocab_size, B, T,
               backend->name(), sched.to_string(), st.step, o.steps, train_path.string(), train_tokens.size());

  TrainSummary sum;
  const auto run_start = Clock::now();
  auto interval_start = run_start;
  std::int64_t interval_steps = 0, run_steps = 0;
  double interval_loss = 0, lr = 0;
  for (std::int64_t step = st.step; step < o.steps; ++step) {
    lr = sched.lr_at(step);
    const Batch batch = batch_at(train_tokens, st.seed, step, B, T);
    const StepResult r = backend->step(batch, B, T, lr);
    if (!std::isfinite(r.loss)) throw Error("training diverged at step " + std::to_string(step) + " (loss not finite)");
    sum.last_loss = r.loss;
    interval_loss += r.loss;
    ++interval_steps;
    ++run_steps;
    const std::int64_t done = step + 1;
    if (done % o.every == 0 || done == o.steps) {
      const double secs = std::chrono::duration<double>(Clock::now() - interval_start).count();
      const double tps = double(interval_steps) * B * T / std::max(secs, 1e-9);
      const double eta = double(o.steps - done) * secs / double(interval_steps);
      std::printf("step %6lld/%lld %5.1f%%  loss %.4f  lr %.3e  tok/s %.0f  eta %s\n", (long long)done,
                  (long long)o.steps, 100.0 * double(done) / double(o.steps), interval_loss / double(interval_steps),
                  lr, tps, format_eta(eta).c_str());
      std::fflush(stdout);

      backend->download(st.model.params, st.optim);
      st.step = done;
      const std::int64_t tokens = done * std::int64_t(B) * T;
      st.model.meta = make_meta(o, run_id, sched, done, tokens, lr, st.seed, B);
      if (merger) {
        // The client copies the tensors and streams them from its own thread: the loop goes on.
        std::vector<TensorView> views;
        for (const auto& s : layout)
          views.push_back({s.name, DType::f32, s.shape,
                           std::as_bytes(std::span<const float>(st.model.params.data() + s.offset, s.numel))});
        merger->send_checkpoint(done, tokens, lr, views);
      }
      if (o.save_checkpoints) {
        char name[64];
        std::snprintf(name, sizeof name, "step_%08lld.h5", (long long)done);
        save_model(o.out / name, cfg, st.model.vocab, st.model.params, st.model.meta);
      }
      save_state(state_path, st);
      interval_start = Clock::now();
      interval_steps = 0;
      interval_loss = 0;
    }
  }
  sum.step = st.step;
  sum.tokens_per_s = double(run_steps) * B * T /
                     std::max(std::chrono::duration<double>(Clock::now() - run_start).count(), 1e-9);
  std::string merger_error;
  if (merger) {
    // Checkpoints are on disk either way: finish the run (and its evaluation), then report.
    try {
      merger->flush();
    } catch (const std::exception& e) {
      merger_error = e.what();
      spdlog::error("merger {}: {}", o.merger, merger_error);
    }
  }

  if (o.eval_positions > 0 && !val_tokens.empty()) {
    backend->download(st.model.params, st.optim);
    GptCpu<float> model(cfg);
    model.params() = st.model.params;
    const EvalResult ev = evaluate(model, val_tokens, o.eval_positions);
    sum.val_loss = ev.loss;
    sum.val_bpc = ev.bits_per_char;
    std::printf("validation: loss %.4f nats, %.4f bits/char over %lld positions of %s\n", ev.loss,
                ev.bits_per_char, (long long)ev.positions, val_path.string().c_str());
  }
  if (!merger_error.empty())
    throw Error("merger " + o.merger + ": " + merger_error + " (checkpoints are in " + o.out.string() + ")");
  return sum;
}

}  // namespace wsm::trainer
