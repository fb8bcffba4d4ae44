// `wsm compare study|sweep|trend`: does a merge of constant-LR checkpoints match a real decay, and which
// shape and window to ship. The work is in tools/compare/; this file parses the command line.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "wsm/core/error.h"
#include "wsm/formats/trainer_folder.h"
#include "tools/commands.h"
#include "wsm/schedules/text.h"
#include "tools/compare/report.h"
#include "tools/compare/study.h"
#include "tools/compare/sweep.h"
#include "tools/compare/trend.h"

namespace wsm::tools {
namespace {
namespace fs = std::filesystem;
using namespace compare;

struct CompareArgs {
  std::string preset = "small";
  std::int64_t steps = 600, every = 10;
  std::string seeds = "3";
  std::vector<std::string> durations{"10%", "20%"};
  std::vector<std::string> shapes{"linear", "cosine", "1-sqrt"};
  std::vector<std::int64_t> windows, granularity;
  std::vector<double> floors;
  std::string eval_cmd, score_key, noise_key, keep = "all", merger;
  std::vector<std::string> baselines;  // NAME=PATH
  bool higher_is_better = false;
  int jobs = 1, threads = 0, batch_size = 0;
  std::int64_t positions = 131072;
  fs::path data, val, out;
  std::vector<std::string> checkpoints;  // PATH or PATH@STEP
  std::vector<fs::path> studies;         // trend
  std::string command_line;
};

// "20%" of the run, or a step count.
std::int64_t resolve_steps(const std::string& text, std::int64_t steps) {
  try {
    if (!text.empty() && text.back() == '%') return std::int64_t(std::llround(std::stod(text) / 100.0 * double(steps)));
    std::size_t used = 0;
    const std::int64_t v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error("wsm compare: '" + text + "' is neither a step count nor a percentage like 20%");
}

// "3": seeds 1..3; "1,5,9": those seeds.
std::vector<std::uint64_t> parse_seeds(const std::string& text) {
  std::vector<std::uint64_t> seeds;
  try {
    if (text.find(',') == std::string::npos) {
      for (std::uint64_t s = 1; s <= std::stoull(text); ++s) seeds.push_back(s);
    } else {
      for (const std::string_view item : text::split(text, ',')) {  // "3," is the one seed 3; repeats count once
        if (item.empty()) continue;
        const std::uint64_t seed = std::stoull(std::string(item));
        if (std::find(seeds.begin(), seeds.end(), seed) == seeds.end()) seeds.push_back(seed);
      }
    }
  } catch (const std::exception&) {
    throw Error("wsm compare: --seeds '" + text + "' is neither a count nor a list like 1,2,3");
  }
  if (seeds.empty()) throw Error("wsm compare: --seeds needs at least one seed");
  return seeds;
}

DecayShape parse_shape(const std::string& name) {
  const auto s = parse_decay_shape(name);
  if (!ambiguous_shape_hint(name).empty()) throw Error("wsm compare: " + ambiguous_shape_hint(name));
  if (!s) throw Error("wsm compare: unknown shape '" + name + "' (linear, cosine, 1-sqrt, inverse-sqrt, exponential, wma)");
  return *s;
}

void print_and_finish(const CompareReport& report, const fs::path& out) {
  const std::string md = write_report(report, out);
  // The table part of the report on stdout, then where everything is.
  const auto table = md.find("## Results") != std::string::npos ? md.find("## Results") : md.find("## Ranking");
  const auto end = md.find("## Pictures");
  std::printf("%s", md.substr(table, end == std::string::npos ? std::string::npos : end - table).c_str());
  std::printf("report: %s\n", fs::absolute(out / "report.md").c_str());
  std::size_t failed = 0, scored = 0;
  for (const auto& m : report.rows) failed += !m.error.empty(), scored += m.score.has_value();
  if (scored == 0)
    throw Error(fmt::format("wsm compare: no model was scored ({} evaluation(s) failed; the first: {}); see {}", failed,
                            failed ? std::find_if(report.rows.begin(), report.rows.end(), [](auto& m) { return !m.error.empty(); })->error
                                   : "none ran",
                            (out / "report.md").string()));
  if (failed) throw Error(fmt::format("wsm compare: {} model(s) could not be scored (see {}; the other results are kept)", failed,
                                      (out / "report.md").string()));
}

void run_study_command(const CompareArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  StudyOptions o;
  o.preset = a.preset, o.steps = a.steps, o.every = a.every, o.seeds = parse_seeds(a.seeds);
  o.durations.clear();
  for (const auto& d : a.durations) o.durations.push_back(resolve_steps(d, a.steps));
  o.shapes.clear();
  for (const auto& s : a.shapes) o.shapes.push_back(parse_shape(s));
  o.windows = a.windows, o.granularity = a.granularity, o.jobs = a.jobs, o.threads = a.threads;
  o.eval_positions = a.positions;
  o.batch_size = a.batch_size, o.data = a.data, o.val = a.val, o.merger = a.merger, o.out = a.out;
  StudyResult r = run_study(o);
  Evaluator ev;
  ev.positions = a.positions, ev.val = a.val;
  CompareReport report{Mode::study, a.command_line, 0, ev.describe(), ScoreOrder::lower_is_better, r.config, r.regime,
                       std::move(r.rows)};
  report.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report.training = r.training;
  print_and_finish(report, a.out);
}

void run_sweep_command(const CompareArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  SweepOptions o;
  const std::vector<double> floors = a.floors.empty() ? std::vector<double>{0.0} : a.floors;
  for (const auto& text : a.shapes)
    for (const MergeSpec& parsed : parse_merge_spec_list(text))
      for (double f : floors) {
        MergeSpec spec = parsed;
        if (!spec.table() && spec.floor() == 0.0) spec.set_floor(f);  // a floor written into the shape wins
        if (std::find(o.specs.begin(), o.specs.end(), spec) == o.specs.end()) o.specs.push_back(spec);
      }
  o.windows = a.windows;
  o.evaluator.command = a.eval_cmd, o.evaluator.json_key = a.score_key, o.evaluator.positions = a.positions;
  o.evaluator.noise_key = a.noise_key;
  if (!a.noise_key.empty() && a.eval_cmd.empty()) throw Error("wsm compare sweep: --noise-key reads an --eval-cmd's output");
  for (const auto& text : a.baselines) o.baselines.push_back(parse_baseline(text));
  o.evaluator.val = a.val;
  o.evaluator.order = a.higher_is_better ? ScoreOrder::higher_is_better : ScoreOrder::lower_is_better;
  o.keep = a.keep == "best" ? Keep::best : Keep::all;
  o.jobs = a.jobs, o.out = a.out;
  for (const auto& text : a.checkpoints) {
    const CheckpointArg in = parse_checkpoint_arg(text);
    o.checkpoints.push_back(in.path);
    o.checkpoint_steps.push_back(in.step);
  }
  SweepResult r = run_sweep(o);
  CompareReport report{Mode::sweep, a.command_line, 0, o.evaluator.describe(), o.evaluator.order, r.config, {},
                       std::move(r.rows)};
  report.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  print_and_finish(report, a.out);
}

void run_trend_command(const CompareArgs& a) {
  const std::string md = run_trend({a.studies, a.out, a.command_line});
  const auto from = md.find("## The regimes"), to = md.find("## Pictures");
  std::printf("%s", md.substr(from, to == std::string::npos ? std::string::npos : to - from).c_str());
  std::printf("report: %s\n", fs::absolute(a.out / "trend.md").c_str());
}

}  // namespace

void add_compare_command(CLI::App& app, const std::string& command_line) {
  auto a = std::make_shared<CompareArgs>();
  a->command_line = command_line;
  auto* cmd = app.add_subcommand("compare", "Compare schedules: WSM merges against real WSD decays (study) or a "
                                            "sweep of merges of your checkpoints scored by your evaluator");
  cmd->require_subcommand(1);
  auto* study = cmd->add_subcommand("study", "Train trunks and WSD branches of wsm's GPT, merge, score, report");
  study->add_option("--preset", a->preset, "Model size: tiny, small, medium, large")->capture_default_str();
  study->add_option("--steps", a->steps, "Run length S: every method is compared at this step")->capture_default_str();
  study->add_option("--every", a->every, "Checkpoint interval K in steps")->capture_default_str();
  study->add_option("--seeds", a->seeds, "Number of seeds (1..N) or a list like 1,2,5 (one seed: 5,)")->capture_default_str();
  study->add_option("--durations", a->durations, "Decay durations D: steps or % of the run")->delimiter(',')->capture_default_str();
  study->add_option("--windows", a->windows, "Merge windows besides each D (default: D/4 and D/2)")->delimiter(',');
  study->add_option("--granularity", a->granularity, "Checkpoint-interval ablation: also merge each W = D from only this "
                                                     "many evenly spaced checkpoints, e.g. 2,4,8,16")->delimiter(',');
  study->add_option("--jobs", a->jobs, "Training processes at once")->capture_default_str();
  study->add_option("--threads", a->threads, "Threads per training process (default: cores / jobs)");
  study->add_option("--batch-size", a->batch_size, "Sequences per step (default: the preset's)");
  study->add_option("--data", a->data, "Training text (default: Austen's five novels)");
  study->add_option("--merger", a->merger, "Also stream each trunk to this `wsm serve` (online merges, run id seed<N>)");
  study->footer(
      "Example:\n"
      "  wsm compare study --preset small --steps 600 --every 10 --seeds 3 --durations 10%,20% --out study/\n"
      "Re-running the same command reuses finished runs, merges and scores.");
  auto* sweep = cmd->add_subcommand("sweep", "Merge checkpoints over shapes x windows x floors, score each, rank");
  sweep->add_option("--windows", a->windows, "Merge windows in steps (default: 2, 4, 8, 16 checkpoint intervals)")->delimiter(',');
  sweep->add_option("--floors", a->floors, "Floors r (minimum LR fraction) crossed with every shape")->delimiter(',');
  sweep->add_option("--eval-cmd", a->eval_cmd, "Score a model with this command; {path} is replaced by its path; the "
                                                "last number on stdout is the score (default: wsm's own evaluator)");
  sweep->add_option("--score-key", a->score_key, "Read the score from this key of a JSON object on stdout instead");
  sweep->add_option("--noise-key", a->noise_key,
                    "Read the score's standard error from this key of a JSON object on stdout (e.g. stderr): a merge "
                    "within 2 combined standard errors of a baseline is reported as equal within noise");
  sweep->add_option("--baseline", a->baselines,
                    "NAME=PATH: a model to compare every merge with, e.g. your own WSD run's final checkpoint (any "
                    "checkpoint form wsm reads; repeatable); scored by the same evaluator")
      ->allow_extra_args(false);  // one NAME=PATH per --baseline: the checkpoints follow
  sweep->add_flag("--higher-is-better", a->higher_is_better, "Scores rank highest first (accuracy) instead of lowest");
  sweep->add_option("--keep", a->keep, "Merged models kept after scoring")->check(CLI::IsMember({"best", "all"}))->capture_default_str();
  sweep->add_option("--jobs", a->jobs, "Eval commands at once")->capture_default_str();
  sweep->add_option("checkpoints", a->checkpoints, "Constant-LR checkpoints (.h5, .safetensors, sharded dirs, Hugging Face checkpoint-N folders); "
                    "PATH@STEP gives a step explicitly")
      ->required();
  sweep->footer(
      "Example:\n"
      "  wsm compare sweep --shapes linear,1-sqrt --windows 2000,4000,8000 --eval-cmd 'python eval.py {path}' \\\n"
      "                    --jobs 2 --keep best --out sweep/ ckpts/step-*.safetensors\n"
      "  wsm compare sweep --shapes linear,1-sqrt --baseline wsd=wsd-run/checkpoint-600 \\\n"
      "                    --eval-cmd 'python tools/examples/hf_eval.py {path} --text heldout.txt' \\\n"
      "                    --out sweep/ run/checkpoint-*\n"
      "Hugging Face checkpoint-N folders in: every model scored (merges, raw, baselines) is a model directory.");
  study->add_option("--shapes", a->shapes, "Decay shapes: linear, cosine, 1-sqrt, ...")->delimiter(',')->capture_default_str();
  sweep->add_option("--shapes", a->shapes, "Merge specs as `wsm merge --shape` takes them: linear,cosine,floor=0.1,"
                                           "ema:alpha=0.2,weights=0.2,0.8")
      ->capture_default_str();
  for (auto* sub : {study, sweep}) {
    sub->add_option("--out", a->out, "Output directory: results.json, results.csv, report.md, pictures")->required();
    sub->add_option("--val", a->val, "Validation text of wsm's evaluator (default: Persuasion)");
    sub->add_option("--eval-positions", a->positions, "Positions scored by wsm's evaluator")->capture_default_str();
  }
  auto* trend = cmd->add_subcommand("trend", "WSM - WSD across training regimes, from finished studies' results.json");
  trend->add_option("studies", a->studies, "Study directories (or their results.json), one per run length")->required();
  trend->add_option("--out", a->out, "Output directory: trend.md, trend.json, pictures")->required();
  trend->footer(
      "Example:\n"
      "  wsm compare trend --out regimes/ study-600/ study-2000/ study-8000/");
  trend->callback([a] { run_trend_command(*a); });
  study->callback([a] { run_study_command(*a); });
  sweep->callback([a] { run_sweep_command(*a); });
}

}  // namespace wsm::tools
