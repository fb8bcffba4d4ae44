#include "tools/compare/study.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "wsm/formats/atomic_file.h"
#include "wsm/formats/checkpoint_name.h"
#include "wsm/schedules/text.h"
#include "wsm/core/error.h"
#include "tools/compare/jobs.h"
#include "tools/compare/scoring.h"
#include "tools/compare/window_merge.h"
#include "wsm/trainer/checkpoint_io.h"
#include "wsm/trainer/model.h"
#include "wsm/trainer/train.h"

namespace wsm::tools::compare {
namespace fs = std::filesystem;
using nlohmann::json;
namespace {

// One training process of the study: a trunk, or a WSD branch resumed from a trunk's kept state.
struct TrainRun {
  std::string name;
  fs::path dir;
  std::vector<std::string> args;  // `wsm train` arguments that define the run (what done.json records)
  std::vector<std::string> launch_args;  // ones that do not change the result (threads, merger)
  fs::path from_state;            // branch point; empty for a trunk
  std::int64_t steps_to_train = 0;
};

json options_json(const StudyOptions& o) {
  std::vector<std::string> shapes;
  for (auto s : o.shapes) shapes.emplace_back(decay_shape_name(s));
  return {{"preset", o.preset},   {"steps", o.steps},         {"every", o.every},
          {"seeds", o.seeds},     {"durations", o.durations}, {"shapes", shapes},
          {"windows", study_windows(o)}, {"granularity", o.granularity}, {"eval_positions", o.eval_positions},
          {"batch_size", o.batch_size}, {"data", o.data.string()}, {"val", o.val.string()}};
}

// The options that decide what a finished run in the directory is. Others (seeds, durations,
// shapes, windows, granularity, evaluation) add runs, merges or scores beside the finished ones.
json run_defining(const json& options) {
  json out = json::object();
  for (const char* key : {"preset", "steps", "every", "batch_size", "data"})
    if (options.contains(key)) out[key] = options[key];
  return out;
}

void validate(const StudyOptions& o, const trainer::Preset& pre) {
  if (o.out.empty()) throw Error("wsm compare study: --out DIR is required");
  if (o.steps <= 0 || o.every <= 0) throw Error("wsm compare study: --steps and --every must be positive");
  if (o.seeds.empty() || o.durations.empty() || o.shapes.empty())
    throw Error("wsm compare study: needs at least one seed, duration and shape");
  for (std::int64_t d : o.durations) {
    if (d < 2 * o.every)
      throw Error(fmt::format("wsm compare study: duration {} steps holds fewer than 2 checkpoints at --every {}", d,
                              o.every));
    if (o.steps - d < pre.warmup)
      throw Error(fmt::format("wsm compare study: duration {} starts at step {}, inside the warmup ({} steps)", d,
                              o.steps - d, pre.warmup));
    for (std::int64_t g : o.granularity) granularity_steps(o.steps, d, g, o.every);
  }
}

// A study directory belongs to one model, run length, interval, batch and text: reusing it with
// others would mix results. Other options may change between invocations (docs/compare.md).
void claim_directory(const StudyOptions& o) {
  fs::create_directories(o.out);
  const fs::path file = o.out / "study.json";
  const json mine = options_json(o);
  if (fs::exists(file)) {
    std::ifstream in(file);
    const json theirs = json::parse(in, nullptr, false);
    if (theirs.is_discarded() || run_defining(theirs) != run_defining(mine))
      throw Error(o.out.string() + " holds a study with another preset, --steps, --every, --batch-size or --data (" +
                  file.string() + "); use another --out or delete it");
  }
  write_file_atomic(file, mine.dump(2));
}

std::vector<std::string> common_train_args(const StudyOptions& o, std::uint64_t seed) {
  std::vector<std::string> a = {"--preset", o.preset, "--steps", std::to_string(o.steps), "--every",
                                std::to_string(o.every), "--seed", std::to_string(seed), "--eval-positions", "0"};
  if (o.batch_size > 0) a.insert(a.end(), {"--batch-size", std::to_string(o.batch_size)});
  if (!o.data.empty()) a.insert(a.end(), {"--data", fs::absolute(o.data).string()});
  if (!o.val.empty()) a.insert(a.end(), {"--val", fs::absolute(o.val).string()});
  return a;
}

fs::path seed_dir(const StudyOptions& o, std::uint64_t seed) { return o.out / "runs" / fmt::format("seed{}", seed); }

std::string branch_name(DecayShape shape, std::int64_t duration) {
  return fmt::format("wsd-{}-d{}", decay_shape_name(shape), duration);
}

TrainRun trunk_run(const StudyOptions& o, std::uint64_t seed, int threads) {
  TrainRun r{fmt::format("seed {} trunk", seed), seed_dir(o, seed) / "trunk", common_train_args(o, seed),
             {"--threads", std::to_string(threads)}, {}, o.steps};
  std::vector<std::string> points;
  for (auto d : o.durations) points.push_back(std::to_string(o.steps - d));
  r.args.insert(r.args.end(), {"--keep-states", fmt::format("{}", fmt::join(points, ","))});
  if (!o.merger.empty())
    r.launch_args.insert(r.launch_args.end(), {"--merger", o.merger, "--run-id", fmt::format("seed{}", seed)});
  return r;
}

TrainRun branch_run(const StudyOptions& o, const trainer::Preset& pre, std::uint64_t seed, DecayShape shape,
                    std::int64_t d, int threads) {
  TrainRun r{fmt::format("seed {} {}", seed, branch_name(shape, d)), seed_dir(o, seed) / branch_name(shape, d),
             common_train_args(o, seed), {"--threads", std::to_string(threads)},
             seed_dir(o, seed) / "trunk" / trainer::state_file_name(o.steps - d), d};
  r.args.insert(r.args.end(), {"--schedule", fmt::format("wsd:warmup={},decay={},shape={},total={},peak={}", pre.warmup, d,
                                                         decay_shape_name(shape), o.steps, pre.peak_lr)});
  return r;
}

// The arguments without --keep-states, and the steps it names.
std::pair<std::vector<std::string>, std::set<std::string>> split_kept_states(std::vector<std::string> args) {
  std::set<std::string> kept;
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == "--keep-states") {
      for (const std::string_view step : text::split(args[i + 1], ',')) kept.emplace(step);
      args.erase(args.begin() + std::ptrdiff_t(i), args.begin() + std::ptrdiff_t(i) + 2);
      break;
    }
  return {args, kept};
}

// What a finished run's done.json records (an empty object when there is none or it is unreadable).
json done_record(const TrainRun& r) {
  std::ifstream in(r.dir / "done.json");
  const json j = in ? json::parse(in, nullptr, false) : json();
  return j.is_object() ? j : json::object();
}

// Finished with the same arguments; a trunk that kept states at more branch points than this
// study needs serves too (a report over fewer durations reuses it).
bool finished(const TrainRun& r) {
  const json j = done_record(r);
  if (!j.contains("args")) return false;
  const auto [done_args, done_kept] = split_kept_states(j.value("args", std::vector<std::string>{}));
  const auto [args, kept] = split_kept_states(r.args);
  return done_args == args && std::includes(done_kept.begin(), done_kept.end(), kept.begin(), kept.end());
}

// The training runs' own wall times, as each run's done.json recorded them (runs finished by a
// wsm that did not record it are counted apart), so a report regenerated later still says what
// the study cost.
TrainingTime training_time(const std::vector<TrainRun>& runs) {
  TrainingTime t;
  for (const auto& r : runs) {
    ++t.runs;
    const json j = done_record(r);
    if (!j.contains("seconds") || !j["seconds"].is_number()) continue;
    t.seconds += j["seconds"].get<double>();
    ++t.timed;
  }
  return t;
}

// Runs what is not finished yet, `jobs` at a time; an interrupted run resumes from its state.h5.
void train_all(const std::vector<TrainRun>& runs, const StudyOptions& o, const std::string& phase) {
  std::vector<const TrainRun*> todo;
  for (const auto& r : runs)
    if (!finished(r)) todo.push_back(&r);
  if (todo.empty()) return;
  std::vector<Job> jobs;
  double total = 0;
  for (const TrainRun* r : todo) {
    Job j{r->name, {self_executable().string(), "train"}, o.out / "logs" / (fs::relative(r->dir, o.out / "runs").string() + ".log")};
    j.argv.insert(j.argv.end(), r->args.begin(), r->args.end());
    j.argv.insert(j.argv.end(), r->launch_args.begin(), r->launch_args.end());
    j.argv.insert(j.argv.end(), {"--out", r->dir.string()});
    if (fs::exists(r->dir / "state.h5")) j.argv.push_back("--resume");
    else if (!r->from_state.empty()) j.argv.insert(j.argv.end(), {"--from-state", r->from_state.string()});
    jobs.push_back(std::move(j));
    total += double(r->steps_to_train);
  }
  spdlog::info("compare: {}: {} run(s), {} at a time (logs in {})", phase, todo.size(), o.jobs,
               (o.out / "logs").string());
  Progress progress(phase, total, "steps");
  std::vector<std::int64_t> last_step(jobs.size(), -1);
  static const std::regex step_line(R"(^step\s+(\d+)/(\d+))");
  const auto on_line = [&](std::size_t i, const std::string& line) {
    std::smatch m;
    if (!std::regex_search(line, m, step_line)) return;
    const std::int64_t step = std::stoll(m[1]);
    const std::int64_t first = todo[i]->from_state.empty() ? 0 : o.steps - todo[i]->steps_to_train;
    progress.advance(double(step - std::max(last_step[i], first)));
    last_step[i] = step;
  };
  // Each run is marked finished as it ends, so an interrupted phase keeps what it completed.
  const auto on_done = [&](std::size_t i, const JobResult& r) {
    if (r.exit_code == 0)
      write_file_atomic(todo[i]->dir / "done.json", json{{"args", todo[i]->args}, {"seconds", r.seconds}}.dump(2));
  };
  const auto results = run_jobs(jobs, o.jobs, {.on_line = on_line, .on_done = on_done});
  progress.finish();
  for (std::size_t i = 0; i < results.size(); ++i)
    if (results[i].exit_code != 0)
      throw Error(fmt::format("{} failed (exit {}): {} (log: {})", todo[i]->name, results[i].exit_code,
                              results[i].last_error, jobs[i].log.string()));
}

std::vector<fs::path> checkpoints_in(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (step_from_file_name(e.path()) && e.path().extension() == ".h5") files.push_back(e.path());
  // By step, not text: a run folder may hold names of two widths (older runs wrote 8 digits).
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return *step_from_file_name(a) < *step_from_file_name(b); });
  return files;
}

std::int64_t step_of(const fs::path& checkpoint) { return *step_from_file_name(checkpoint); }

// Which checkpoints of a run get scored. Scoring costs a forward pass over every validation
// position, so the curves are drawn for the first seed only, over the last 2 max(D) steps, at about
// four points per max(D); every seed scores what the summary needs (the final step, and the trunk
// at each branch point for the regime).
struct CurvePoints {
  std::int64_t from = 0, spacing = 1;
  std::vector<std::int64_t> always;
  bool wanted(std::int64_t step, bool curve) const {
    if (std::find(always.begin(), always.end(), step) != always.end()) return true;
    return curve && step >= from && (step - from) % spacing == 0;
  }
};

CurvePoints curve_points(const StudyOptions& o) {
  const std::int64_t longest = *std::max_element(o.durations.begin(), o.durations.end());
  CurvePoints c;
  c.spacing = std::max<std::int64_t>(1, (longest / 4 + o.every - 1) / o.every) * o.every;
  c.from = std::max<std::int64_t>(0, o.steps - 2 * longest);
  c.always = {o.steps};
  for (auto d : o.durations) c.always.push_back(o.steps - d);
  return c;
}

void add_curve(std::vector<ScoredModel>& rows, const fs::path& dir, Method method, const std::string& shape,
               std::int64_t window, std::uint64_t seed, std::int64_t final_step, const CurvePoints& points, bool curve) {
  for (const auto& p : checkpoints_in(dir)) {
    if (!points.wanted(step_of(p), curve)) continue;
    ScoredModel m;
    m.method = method;
    m.shape = shape;
    m.window = window;
    m.seed = seed;
    m.step = step_of(p);
    m.final = *m.step == final_step;
    m.path = fs::absolute(p);
    rows.push_back(std::move(m));
  }
}

// The checkpoint-interval ablation: per duration D and count g, the shapes merged over W = D from
// g of the trunk's checkpoints only (rows carry `interval` = D / g).
void add_granularity_merges(std::vector<ScoredModel>& rows, const StudyOptions& o, const std::vector<MergeSpec>& specs,
                            std::uint64_t seed) {
  const fs::path trunk = seed_dir(o, seed) / "trunk";
  for (auto d : o.durations)
    for (auto g : o.granularity) {
      std::vector<fs::path> inputs;
      for (auto step : granularity_steps(o.steps, d, g, o.every)) inputs.push_back(trunk / checkpoint_file_name(step));
      const fs::path dir = o.out / "merges" / fmt::format("seed{}", seed) / fmt::format("granularity{}", g);
      for (auto& m : merge_window(inputs, specs, d, dir, ".h5")) {
        m.seed = seed;
        m.interval = d / g;
        rows.push_back(std::move(m));
      }
    }
}

}  // namespace

std::vector<std::int64_t> granularity_steps(std::int64_t steps, std::int64_t duration, std::int64_t count,
                                            std::int64_t every) {
  if (count < 2 || duration % count != 0 || (duration / count) % every != 0)
    throw Error(fmt::format("wsm compare study: --granularity {} does not fit duration {}: it needs {} / {} to be a "
                            "whole multiple of --every {}",
                            count, duration, duration, count, every));
  std::vector<std::int64_t> out;
  for (std::int64_t j = count - 1; j >= 0; --j) out.push_back(steps - j * (duration / count));
  return out;
}

std::vector<std::int64_t> study_windows(const StudyOptions& o) {
  std::set<std::int64_t> windows(o.durations.begin(), o.durations.end());
  const std::int64_t longest = *std::max_element(o.durations.begin(), o.durations.end());
  std::vector<std::int64_t> extra = o.windows;
  if (extra.empty())
    for (auto d : o.durations) extra.insert(extra.end(), {d / 4, d / 2});
  for (auto w : extra) {
    w = w / o.every * o.every;
    if (w >= 2 * o.every && w <= longest) windows.insert(w);
  }
  return {windows.begin(), windows.end()};
}

StudyResult run_study(const StudyOptions& o) {
  const trainer::Preset pre = trainer::preset(o.preset);
  validate(o, pre);
  claim_directory(o);
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = o.threads > 0 ? o.threads : std::max(1, cores / std::max(1, o.jobs));

  std::vector<TrainRun> trunks, branches;
  for (auto seed : o.seeds) trunks.push_back(trunk_run(o, seed, threads));
  // Shortest decays first, every seed: an interrupted study has complete seeds for them soonest.
  std::vector<std::int64_t> shortest_first = o.durations;
  std::sort(shortest_first.begin(), shortest_first.end());
  for (auto d : shortest_first)
    for (auto seed : o.seeds)
      for (auto shape : o.shapes) branches.push_back(branch_run(o, pre, seed, shape, d, threads));
  train_all(trunks, o, "train trunks");
  train_all(branches, o, "train WSD branches");

  StudyResult result;
  std::vector<TrainRun> all = trunks;
  all.insert(all.end(), branches.begin(), branches.end());
  result.training = training_time(all);
  std::vector<MergeSpec> specs;
  for (auto shape : o.shapes) specs.push_back(ShapeRule{shape});
  const auto windows = study_windows(o);
  const CurvePoints points = curve_points(o);
  const std::int64_t longest = *std::max_element(o.durations.begin(), o.durations.end());
  for (auto seed : o.seeds) {
    const fs::path trunk = seed_dir(o, seed) / "trunk";
    const bool curve = seed == o.seeds.front();
    add_curve(result.rows, trunk, Method::raw, "", 0, seed, o.steps, points, curve);
    for (auto d : o.durations)
      for (auto shape : o.shapes)
        add_curve(result.rows, seed_dir(o, seed) / branch_name(shape, d), Method::wsd,
                  std::string(decay_shape_name(shape)), d, seed, o.steps, points, curve && d == longest);
    const auto inputs = checkpoints_in(trunk);
    for (auto w : windows)
      for (auto& m : merge_window(inputs, specs, w, o.out / "merges" / fmt::format("seed{}", seed), ".h5")) {
        m.seed = seed;
        result.rows.push_back(std::move(m));
      }
    add_granularity_merges(result.rows, o, specs, seed);
  }

  Evaluator evaluator;
  evaluator.positions = o.eval_positions;
  evaluator.val = o.val;
  ScoreCache cache(o.out / "scores.json");
  score_models(result.rows, evaluator, cache, o.jobs);

  const auto model = trainer::load_model(seed_dir(o, o.seeds.front()) / "trunk" / checkpoint_file_name(o.steps));
  const double params = double(trainer::num_params(model.config));
  const double tokens = double(model.meta.tokens.value_or(0));
  result.regime = {{"params", params}, {"tokens", tokens}, {"tokens_per_param", tokens / params},
                   {"batch_tokens", tokens / double(o.steps)}, {"peak_lr", pre.peak_lr}, {"warmup", pre.warmup}};
  result.config = options_json(o);
  return result;
}

}  // namespace wsm::tools::compare
