// `wsm report DIR`: the stable-phase readout of a `wsm serve --out DIR` with an evaluator
// (--eval-cmd / --eval-builtin): validation score against step for the raw checkpoints and each
// emulation, read from DIR/index.json, drawn per run as PNG and SVG (tools/plot.h), with a table
// that always has the raw line. --rescore first scores what has no score (tools/rescore.h).
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "merger/daemon/run_id.h"
#include "wsm/core/error.h"
#include "tools/commands.h"
#include "tools/plot.h"
#include "tools/rescore.h"

namespace wsm::tools {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct ReportArgs {
  fs::path dir, out, store;
  bool json = false, rescore = false, higher_is_better = false;
  std::string eval_cmd, score_key, index_name = "index.json";
};

// One line of the readout: a label's scored points, oldest first.
struct Curve {
  std::vector<double> steps, scores;
  std::size_t failed = 0;
};
using RunCurves = std::map<std::string, Curve>;  // label ("raw" or the emulation's) -> curve

void add_point(RunCurves& run, const std::string& label, const json& record) {
  const auto eval = record.find("eval");
  if (eval == record.end() || !eval->is_object()) return;
  Curve& c = run[label];
  if (!eval->contains("score") || !(*eval)["score"].is_number()) {
    ++c.failed;
    return;
  }
  c.steps.push_back(record.value("step", 0.0));
  c.scores.push_back((*eval)["score"].get<double>());
}

std::map<std::string, RunCurves> read_curves(const fs::path& index_path, std::string& evaluator) {
  std::ifstream in(index_path);
  if (!in) throw Error(index_path.string() + ": no index (is this the --out directory of `wsm serve`?)");
  const auto index = json::parse(in, nullptr, false);
  if (index.is_discarded() || !index.is_object()) throw Error(index_path.string() + ": not a JSON object");
  std::map<std::string, RunCurves> runs;
  auto read = [&](const char* list, bool raw) {
    if (!index.contains(list) || !index[list].is_array()) return;
    for (const auto& r : index[list]) {
      if (!r.is_object()) continue;
      add_point(runs[r.value("run_id", "")], raw ? "raw" : r.value("label", "?"), r);
      if (r.contains("eval") && r["eval"].is_object() && evaluator.empty()) evaluator = r["eval"].value("evaluator", "");
    }
  };
  read("raw", true);
  read("outputs", false);
  for (auto& [run, curves] : runs) curves.try_emplace("raw");  // the raw line, even when nothing raw was scored
  for (auto& [run, curves] : runs)
    for (auto& [label, c] : curves) {  // records are in the order written: sort by step for the lines
      std::vector<std::size_t> order(c.steps.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](auto a, auto b) { return c.steps[a] < c.steps[b]; });
      Curve sorted{{}, {}, c.failed};
      for (auto i : order) sorted.steps.push_back(c.steps[i]), sorted.scores.push_back(c.scores[i]);
      c = std::move(sorted);
    }
  return runs;
}

// Draws one run's curves (one line per label, in label order) into base.png and base.svg.
void draw_run(const fs::path& base, const std::string& run, const RunCurves& curves, const std::string& evaluator) {
  std::vector<Series> series;
  for (const auto& [label, c] : curves)
    if (!c.steps.empty())
      series.push_back({label == "raw" ? "raw checkpoints" : label, c.steps, c.scores, Mark::line_points, {},
                        label == "raw" ? kRawColour : shape_colour(label)});
  const std::string ylabel = evaluator.size() > 60 ? "score" : "score: " + evaluator;
  for (const char* ext : {".png", ".svg"}) {
    fs::path file = base;
    file += ext;
    plot_lines(file, "run '" + run + "': validation score vs step", "step", ylabel, series);
  }
}

json summary(const std::map<std::string, RunCurves>& runs) {
  json rows = json::array();
  for (const auto& [run, curves] : runs)
    for (const auto& [label, c] : curves) {
      json row = {{"run_id", run}, {"label", label}, {"scored", c.steps.size()}, {"failed", c.failed}};
      if (!c.steps.empty()) {
        row["newest_step"] = c.steps.back();
        row["newest_score"] = c.scores.back();
      }
      rows.push_back(row);
    }
  return rows;
}

void rescore(const ReportArgs& a) {
#ifdef WSM_HAVE_TRAINER
  if (a.eval_cmd.empty()) throw Error("--rescore needs --eval-cmd CMD (the fixed eval command; {path} is the model)");
  compare::Evaluator ev;
  ev.command = a.eval_cmd;
  ev.json_key = a.score_key;
  ev.order = a.higher_is_better ? compare::ScoreOrder::higher_is_better : compare::ScoreOrder::lower_is_better;
  const auto s = rescore_index(a.dir, a.index_name, ev, a.store);
  fmt::print(stderr, "rescore: {} scored, {} failed{}\n", s.scored, s.failed,
             s.raw_missing ? fmt::format("; {} raw checkpoint(s) not rescored (give the run's --store DIR)", s.raw_missing) : "");
#else
  throw Error("--rescore: this wsm was built without the trainer (WSM_BUILD_TRAINER=OFF)");
#endif
}

void run_report(const ReportArgs& a) {
  if (a.rescore) rescore(a);
  else if (!a.eval_cmd.empty()) throw Error("--eval-cmd is used with --rescore");
  std::string evaluator;
  const auto runs = read_curves(a.dir / a.index_name, evaluator);
  std::size_t points = 0;
  for (const auto& [run, curves] : runs)
    for (const auto& [label, c] : curves) points += c.steps.size();
  if (points == 0)
    throw Error((a.dir / a.index_name).string() +
                ": no scored output yet (start `wsm serve` with --eval-cmd or --eval-builtin)");
  const fs::path out = a.out.empty() ? a.dir / "report" : a.out;
  fs::create_directories(out);
  json files = json::array();
  for (const auto& [run, curves] : runs) {
    const fs::path base = out / merger::run_folder(out, run).filename();
    draw_run(base, run, curves, evaluator);
    files.push_back(base.string() + ".png");
    files.push_back(base.string() + ".svg");
  }
  const json rows = summary(runs);
  if (a.json) {
    std::cout << json{{"evaluator", evaluator}, {"curves", rows}, {"files", files}}.dump(2) << "\n";
    return;
  }
  fmt::print("scores by {}\n{:<16} {:<28} {:>7} {:>7} {:>12} {:>14}\n", evaluator, "run", "label", "scored", "failed",
             "newest step", "newest score");
  for (const auto& r : rows)
    fmt::print("{:<16} {:<28} {:>7} {:>7} {:>12} {:>14}\n", r["run_id"].get<std::string>(), r["label"].get<std::string>(),
               r["scored"].get<std::size_t>(), r["failed"].get<std::size_t>(),
               r.contains("newest_step") ? fmt::format("{}", r["newest_step"].get<double>()) : "-",
               r.contains("newest_score") ? fmt::format("{:.6g}", r["newest_score"].get<double>()) : "-");
  for (const auto& f : files) fmt::print("wrote {}\n", f.get<std::string>());
}

}  // namespace

void add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  auto* cmd = app.add_subcommand("report", "Plot a daemon's scores: validation score vs step, raw and each emulation");
  cmd->add_option("dir", args->dir, "The --out directory of `wsm serve --eval-cmd/--eval-builtin` (holds index.json)")
      ->required();
  cmd->add_option("--out", args->out, "Where the pictures go (default DIR/report): <run>.png and <run>.svg");
  cmd->add_flag("--json", args->json, "Print the summary as JSON");
  cmd->add_flag("--rescore", args->rescore,
                "First score every output (and, with --store, raw checkpoint) that has no score, with --eval-cmd, "
                "and rewrite index.json atomically (stop the daemon first)");
  cmd->add_option("--eval-cmd", args->eval_cmd, "--rescore: the eval command; {path} is replaced by the model's path");
  cmd->add_option("--score-key", args->score_key, "--rescore: read the score from this key of a JSON object on stdout");
  cmd->add_option("--store", args->store, "--rescore: the daemon's --store, where raw checkpoints are found");
  cmd->add_option("--index", args->index_name, "The index's file name in DIR (`wsm serve --index`)")->capture_default_str();
  cmd->add_flag("--higher-is-better", args->higher_is_better, "--rescore: scores rank highest first for index.json's best");
  cmd->footer(
      "Example:\n"
      "  wsm serve --out merged --emulate 1-sqrt@800 linear@800 --every 100 --store window \\\n"
      "            --eval-cmd 'python eval.py {path}'\n"
      "  wsm report merged          # merged/report/<run>.png and .svg, and a table of the newest scores\n"
      "  wsm report merged --rescore --eval-cmd 'python eval.py {path}' --store window   # score what failed");
  cmd->callback([args] { run_report(*args); });
}

}  // namespace wsm::tools
