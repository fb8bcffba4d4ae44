#include "tools/compare/trend.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "tools/compare/seed_scores.h"
#include "tools/plot.h"
#include "wsm/core/error.h"
#include "wsm/core/version.h"
#include "wsm/formats/atomic_file.h"

namespace wsm::tools::compare {
namespace fs = std::filesystem;
using nlohmann::json;
namespace {

struct TrendCell {
  std::string shape;
  std::int64_t percent = 0;  // decay duration D as a share of the run
  std::int64_t duration = 0, best_window = 0;
  Summary diff, best_diff;   // WSM(W = D) - WSD and WSM(best W) - WSD, paired per seed
};

struct TrendStudy {
  fs::path path;
  std::string command, phase;
  double tokens_per_param = 0;
  std::int64_t steps = 0;
  std::size_t seeds = 0;
  json phases;
  std::vector<TrendCell> cells;
};

Summary summary_from_json(const json& j) {
  Summary s;
  s.n = j.at("n").get<std::size_t>();
  s.mean = j.at("mean").get<double>();
  s.sd = j.value("sd", 0.0);
  const json& ci = j.at("ci95");
  s.half_ci = ci.is_array() ? (ci[1].get<double>() - ci[0].get<double>()) / 2 : std::numeric_limits<double>::infinity();
  return s;
}

TrendStudy load_study(const fs::path& given) {
  const fs::path file = fs::is_directory(given) ? given / "results.json" : given;
  std::ifstream in(file);
  if (!in) throw Error("wsm compare trend: cannot read " + file.string() + " (a study directory or its results.json)");
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || j.value("mode", "") != "study")
    throw Error("wsm compare trend: " + file.string() + " is not the results.json of a `wsm compare study`");
  TrendStudy s;
  s.path = file;
  try {
    s.command = j.value("command", "");
    s.steps = j.at("config").at("steps").get<std::int64_t>();
    s.seeds = j.at("config").at("seeds").size();
    s.tokens_per_param = j.at("regime").at("tokens_per_param").get<double>();
    s.phases = j.at("regime").value("phases", json::array());
    if (!s.phases.empty()) s.phase = s.phases.front().value("phase", "");
    for (const auto& c : j.at("summary")) {
      TrendCell t{c.at("shape").get<std::string>()};
      t.duration = c.at("duration").get<std::int64_t>();
      t.percent = std::llround(100.0 * double(t.duration) / double(s.steps));
      t.best_window = c.at("best_window").get<std::int64_t>();
      t.diff = summary_from_json(c.at("wsm_minus_wsd"));
      t.best_diff = summary_from_json(c.at("best_wsm_minus_wsd"));
      s.cells.push_back(std::move(t));
    }
  } catch (const json::exception& e) {
    throw Error("wsm compare trend: " + file.string() + ": " + e.what());
  }
  if (s.cells.empty()) throw Error("wsm compare trend: " + file.string() + " has no summary (no shape scored on every method)");
  return s;
}

const TrendCell* find_cell(const TrendStudy& s, const std::string& shape, std::int64_t percent) {
  for (const auto& c : s.cells)
    if (c.shape == shape && c.percent == percent) return &c;
  return nullptr;
}

bool matches_or_beats(const Summary& d) { return d.n >= 2 && d.mean - d.half_ci <= 0; }

// From which regime on the best merge matches or beats WSD in every later regime, in words.
std::string onset(const std::vector<TrendStudy>& studies, const std::string& shape, std::int64_t percent) {
  std::vector<std::pair<double, bool>> seen;
  for (const auto& s : studies)
    if (const auto* c = find_cell(s, shape, percent)) seen.emplace_back(s.tokens_per_param, matches_or_beats(c->best_diff));
  if (seen.empty()) return "not measured";
  std::size_t from = seen.size();
  while (from > 0 && seen[from - 1].second) --from;
  if (from == seen.size()) return fmt::format("worse than WSD at the longest regime measured ({:.3g} tokens per parameter)", seen.back().first);
  if (from == 0) return "matches or beats WSD in every regime measured";
  return fmt::format("matches or beats WSD from {:.3g} tokens per parameter on (worse at {:.3g})", seen[from].first,
                     seen[from - 1].first);
}

std::vector<std::string> shapes_of(const std::vector<TrendStudy>& studies) {
  std::vector<std::string> shapes;
  for (const auto& s : studies)
    for (const auto& c : s.cells)
      if (std::find(shapes.begin(), shapes.end(), c.shape) == shapes.end()) shapes.push_back(c.shape);
  return shapes;
}

std::vector<std::int64_t> percents_of(const std::vector<TrendStudy>& studies) {
  std::vector<std::int64_t> out;
  for (const auto& s : studies)
    for (const auto& c : s.cells)
      if (std::find(out.begin(), out.end(), c.percent) == out.end()) out.push_back(c.percent);
  std::sort(out.begin(), out.end());
  return out;
}

std::string trend_picture(const std::vector<TrendStudy>& studies, std::int64_t percent, const fs::path& dir) {
  const auto shapes = shapes_of(studies);
  std::vector<Series> series;
  PlotOptions options;
  for (const auto& s : studies) options.xlabels.emplace_back(std::log10(s.tokens_per_param), fmt::format("{:.3g}", s.tokens_per_param));
  for (std::size_t k = 0; k < shapes.size(); ++k) {
    Series line{shapes[k], {}, {}, Mark::line_points, {}, int(k)};
    for (const auto& s : studies)
      if (const auto* c = find_cell(s, shapes[k], percent)) {
        line.xs.push_back(std::log10(s.tokens_per_param));
        line.ys.push_back(c->best_diff.mean);
        line.yerr.push_back(c->best_diff.n > 1 ? c->best_diff.half_ci : std::nan(""));
      }
    series.push_back(std::move(line));
  }
  const double lo = options.xlabels.front().first, hi = options.xlabels.back().first;
  series.push_back({"no difference", {lo, hi}, {0, 0}, Mark::line, {}, 6});
  const std::string stem = fmt::format("trend_{}pct", percent);
  for (const char* ext : {".png", ".svg"})
    plot_lines(dir / (stem + ext), fmt::format("WSM (best window) - WSD, decay over the last {}% of the run", percent),
               "tokens per parameter (log scale)", "WSM - WSD (nats)", series, options);
  return stem;
}

std::string trend_markdown(const std::vector<TrendStudy>& studies, const std::vector<std::string>& pictures,
                           const std::string& command) {
  const auto shapes = shapes_of(studies);
  const auto percents = percents_of(studies);
  std::string md = "# WSM against WSD across training regimes\n\n";
  md += "Each study trains constant-LR trunks to a step S and compares, per shape and decay duration D, WSD (the trunk "
        "decayed over its last D steps) with WSM (a merge of the trunk's checkpoints over a window W <= D). Below, the "
        "best window's paired difference WSM - WSD (nats of validation loss, mean over seeds with its 95% interval; below "
        "zero the merge is better) against how long the run was, in tokens per parameter.\n\n";
  md += "## The regimes\n\n| study | S (steps) | tokens per parameter | seeds | phase (shortest D) |\n|---|---|---|---|---|\n";
  for (const auto& s : studies)
    md += fmt::format("| {} | {} | {:.3g} | {} | {} |\n", s.path.parent_path().filename().string(), s.steps, s.tokens_per_param,
                      s.seeds, s.phase.empty() ? "n/a" : s.phase);
  for (auto pct : percents) {
    md += fmt::format("\n## Decay over the last {}% of the run\n\n| shape |", pct);
    for (const auto& s : studies) md += fmt::format(" {:.3g} tokens/param |", s.tokens_per_param);
    md += "\n|---|" + [&] { std::string r; for (std::size_t i = 0; i < studies.size(); ++i) r += "---|"; return r; }() + "\n";
    for (const auto& shape : shapes) {
      md += "| " + shape + " |";
      for (const auto& s : studies) {
        const auto* c = find_cell(s, shape, pct);
        md += c ? fmt::format(" {} (W = {}) |", interval(c->best_diff), c->best_window) : " n/a |";
      }
      md += "\n";
    }
    md += "\n";
    for (const auto& shape : shapes) md += fmt::format("- {}: {}.\n", shape, onset(studies, shape, pct));
  }
  md += "\n## Pictures\n\n";
  for (const auto& stem : pictures)
    md += fmt::format("![{0}]({0}.png)\n\n*The best merge window's WSM - WSD per shape (95% intervals) against tokens per "
                      "parameter, one point per study.*\n\n",
                      stem);
  md += fmt::format("## How it was made\n\n- command: `{}`\n- wsm {}\n- studies:\n", command, wsm_version());
  for (const auto& s : studies) md += fmt::format("  - `{}`\n", s.command);
  return md;
}

}  // namespace

std::string run_trend(const TrendOptions& o) {
  if (o.studies.empty()) throw Error("wsm compare trend: give at least one study directory");
  if (o.out.empty()) throw Error("wsm compare trend: --out DIR is required");
  std::vector<TrendStudy> studies;
  for (const auto& p : o.studies) studies.push_back(load_study(p));
  std::sort(studies.begin(), studies.end(), [](const auto& a, const auto& b) { return a.tokens_per_param < b.tokens_per_param; });
  fs::create_directories(o.out);
  std::vector<std::string> pictures;
  for (auto pct : percents_of(studies)) pictures.push_back(trend_picture(studies, pct, o.out));
  const std::string md = trend_markdown(studies, pictures, o.command_line);

  json doc = {{"command", o.command_line}, {"version", std::string(wsm_version())}, {"studies", json::array()}};
  for (const auto& s : studies) {
    json cells = json::array();
    for (const auto& c : s.cells)
      cells.push_back({{"shape", c.shape}, {"percent", c.percent}, {"duration", c.duration}, {"best_window", c.best_window},
                       {"wsm_minus_wsd", {{"n", c.diff.n}, {"mean", c.diff.mean}, {"half_ci95", c.diff.half_ci}}},
                       {"best_wsm_minus_wsd", {{"n", c.best_diff.n}, {"mean", c.best_diff.mean}, {"half_ci95", c.best_diff.half_ci}}}});
    doc["studies"].push_back({{"results", s.path.string()}, {"command", s.command}, {"steps", s.steps},
                              {"tokens_per_param", s.tokens_per_param}, {"phases", s.phases}, {"cells", cells}});
  }
  write_file_atomic(o.out / "trend.json", doc.dump(2));
  write_file_atomic(o.out / "trend.md", md);
  return md;
}

}  // namespace wsm::tools::compare
