#include "tools/compare/figures.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "wsm/schedules/emulate.h"
#include "wsm/schedules/schedule.h"
#include "tools/compare/findings.h"
#include "tools/compare/report.h"
#include "tools/plot.h"

namespace wsm::tools::compare {
namespace fs = std::filesystem;
namespace {

using Figures = std::vector<std::pair<std::string, std::string>>;
constexpr int kGrey = kRawColour;  // the trunk / raw series

void save(Figures& out, const fs::path& dir, const std::string& stem, const std::string& caption, const std::string& title,
          const std::string& xlabel, const std::string& ylabel, const std::vector<Series>& series,
          const PlotOptions& options = {}) {
  for (const char* ext : {".png", ".svg"}) plot_lines(dir / (stem + ext), title, xlabel, ylabel, series, options);
  out.emplace_back(stem, caption);
}

std::vector<std::string> shapes_of(const std::vector<ScoredModel>& rows, Method method) {
  std::vector<std::string> shapes;
  for (const auto& m : rows)
    if (m.method == method && std::find(shapes.begin(), shapes.end(), m.shape) == shapes.end()) shapes.push_back(m.shape);
  return shapes;
}

// The shape's colour, the same in every picture (tools/plot.h).
int colour_for(const std::vector<std::string>& /*shapes*/, const std::string& shape) { return shape_colour(shape); }

std::string spec_name(const ScoredModel& m) { return m.shape + (m.floor > 0 ? fmt::format(" floor {}", m.floor) : ""); }

// The baselines in the order given, each with its colour.
std::vector<std::pair<const ScoredModel*, int>> scored_baselines(const std::vector<ScoredModel>& rows) {
  std::vector<std::pair<const ScoredModel*, int>> out;
  std::size_t k = 0;
  for (const auto& m : rows)
    if (m.method == Method::baseline) {
      if (m.score && std::isfinite(*m.score)) out.emplace_back(&m, baseline_colour(k));
      ++k;
    }
  return out;
}

void add_point(Series& s, const ScoredModel& m) {
  s.xs.push_back(double(*m.step));
  s.ys.push_back(*m.score);
}

void loss_vs_step(Figures& out, const CompareReport& r, const fs::path& dir, std::uint64_t seed, std::int64_t d) {
  const std::int64_t steps = r.config.at("steps");
  const auto shapes = shapes_of(r.rows, Method::wsd);
  const double from = double(std::max<std::int64_t>(0, steps - 2 * d));
  std::vector<Series> series{{"raw trunk (constant LR)", {}, {}, Mark::line_points, {}, kGrey}};
  std::map<std::string, Series> wsd, wsm;
  double branch_start_loss = 0;
  for (const auto& m : r.rows) {
    if (m.seed != seed || !m.score || !m.step || double(*m.step) < from) continue;
    if (m.method == Method::raw) add_point(series[0], m);
    if (m.method == Method::raw && *m.step == steps - d) branch_start_loss = *m.score;
  }
  for (const auto& shape : shapes) {
    wsd[shape] = {"WSD " + shape + fmt::format(", decay over {} steps", d), {double(steps - d)}, {branch_start_loss}, Mark::line, {}, colour_for(shapes, shape)};
    wsm[shape] = {"WSM " + shape + fmt::format(" merge, window {}", d), {}, {}, Mark::points, {}, colour_for(shapes, shape)};
  }
  for (const auto& m : r.rows) {
    if (m.seed != seed || !m.score || !m.step) continue;
    if (m.method == Method::wsd && m.window == d) add_point(wsd[m.shape], m);
    if (m.method == Method::wsm && !m.interval && m.window == d && wsm.contains(m.shape)) add_point(wsm[m.shape], m);
  }
  for (auto& [shape, s] : wsd) series.push_back(std::move(s));
  for (auto& [shape, s] : wsm) series.push_back(std::move(s));
  save(out, dir, "loss_vs_step",
       fmt::format("Validation loss against step (seed {}): the constant-LR trunk, each WSD branch decaying over the last {} "
                   "steps, and the merges of the trunk's checkpoints over the same window (points at step {}).",
                   seed, d, steps),
       fmt::format("Validation loss, seed {}", seed), "step", "validation loss (nats)", series);
}

void wsm_vs_wsd(Figures& out, const fs::path& dir, const std::vector<StudyCell>& cells) {
  // Paired per seed: seed-to-seed spread cancels, so the interval shows what the comparison can tell.
  std::vector<Series> series{{"WSM (merge over W = D) - WSD", {}, {}, Mark::points, {}, 0},
                             {"WSM (best W <= D) - WSD", {}, {}, Mark::points, {}, 2},
                             {"raw trunk - WSD", {}, {}, Mark::points, {}, kGrey},
                             {"no difference", {-0.5, double(cells.size()) - 0.5}, {0, 0}, Mark::line, {}, 1}};
  PlotOptions options;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    const auto& c = cells[i];
    const double x = double(i);
    std::vector<double> raw_minus_wsd;
    const Summary* per[] = {&c.diff, &c.best_diff};
    for (std::size_t k = 0; k < 2; ++k) {
      series[k].xs.push_back(x - 0.15 + 0.15 * double(k));
      series[k].ys.push_back(per[k]->mean);
      series[k].yerr.push_back(per[k]->half_ci);
    }
    series[2].xs.push_back(x + 0.15);
    series[2].ys.push_back(c.raw.mean - c.wsd.mean);
    series[2].yerr.push_back(std::nan(""));
    options.xlabels.emplace_back(x, fmt::format("{} D={}", c.shape, c.duration));
  }
  save(out, dir, "wsm_vs_wsd",
       "Validation loss of WSM minus WSD at the final step, per shape and decay duration D: mean of the per-seed "
       "differences with its 95% interval (below zero: the merge is better); the raw trunk minus WSD for scale.",
       "WSM against WSD (paired by seed)", "shape and decay duration (steps)", "loss difference to WSD (nats)", series,
       options);
}

void lr_picture(Figures& out, const CompareReport& r, const fs::path& dir, std::int64_t d) {
  const std::int64_t steps = r.config.at("steps"), every = r.config.at("every");
  const double peak = r.regime.at("peak_lr");
  const std::int64_t warmup = r.regime.at("warmup");
  const auto shapes = shapes_of(r.rows, Method::wsd);
  std::vector<Series> series;
  const std::int64_t from = std::max<std::int64_t>(0, steps - d - d / 2);
  for (const auto& shape : shapes) {
    const auto parsed = parse_decay_shape(shape);
    if (!parsed) continue;
    Schedule wsd{.kind = ScheduleKind::wsd, .peak = peak, .warmup = warmup, .total = steps, .decay = d, .decay_shape = *parsed};
    const auto emulated = emulate_merge(ShapeRule{*parsed}, steps, d, every);
    Series branch{"WSD " + shape + " (the branch's LR)", {}, {}, Mark::line, {}, colour_for(shapes, shape)};
    Series merge{"WSM " + shape + " (LR the merge emulates)", {}, {}, Mark::staircase, {}, colour_for(shapes, shape)};
    for (std::int64_t s = from; s < steps; ++s) {
      branch.xs.push_back(double(s)), branch.ys.push_back(wsd.lr_at(s));
      merge.xs.push_back(double(s)), merge.ys.push_back(peak * emulated.factor[std::size_t(s)]);
    }
    series.push_back(std::move(branch));
    series.push_back(std::move(merge));
  }
  save(out, dir, "lr",
       fmt::format("Learning rate of each WSD branch (decay over the last {} steps) beside the piecewise-constant LR that "
                   "the merge over the same window emulates (one step per checkpoint interval of {} steps).",
                   d, every),
       "Decay vs the merge's emulated decay", "step", "learning rate", series);
}

void weights_picture(Figures& out, const CompareReport& r, const fs::path& dir, std::int64_t window,
                     std::optional<std::uint64_t> seed) {
  std::vector<Series> series;
  for (const auto& m : r.rows) {
    if (m.method != Method::wsm || m.interval || m.window != window || m.seed != seed) continue;
    Series s{spec_name(m), {}, m.weights, Mark::line_points, {}, shape_colour(m.shape)};
    for (auto step : m.sources) s.xs.push_back(double(step));
    series.push_back(std::move(s));
  }
  if (series.empty()) return;
  save(out, dir, "weights", fmt::format("Merge weight c_j of each checkpoint (by its step) per shape, window {} steps.", window),
       fmt::format("Merge weights, window {} steps", window), "checkpoint step", "merge weight", series);
}

void granularity_picture(Figures& out, const fs::path& dir, const std::vector<GranularityCell>& cells, std::int64_t d) {
  std::vector<std::string> shapes;
  std::map<std::string, Series> by_shape;
  double lo = 1e300, hi = -1e300;
  for (const auto& c : cells) {
    if (c.duration != d) continue;
    if (!by_shape.contains(c.shape)) shapes.push_back(c.shape);
    auto& s = by_shape[c.shape];
    s.name = c.shape, s.mark = Mark::line_points, s.colour = colour_for(shapes, c.shape);
    s.xs.push_back(double(c.count)), s.ys.push_back(c.diff.mean), s.yerr.push_back(c.diff.half_ci);
    lo = std::min(lo, double(c.count)), hi = std::max(hi, double(c.count));
  }
  if (shapes.empty()) return;
  std::vector<Series> series;
  for (const auto& shape : shapes) series.push_back(std::move(by_shape[shape]));
  series.push_back({"no difference", {lo, hi}, {0, 0}, Mark::line, {}, kGrey});
  save(out, dir, fmt::format("granularity_d{}", d),
       fmt::format("WSM minus WSD at the final step against the number of checkpoints merged over the same {}-step window "
                   "(evenly spaced, subsampled from one trunk), per shape: mean of the per-seed differences with its 95% "
                   "interval (below zero: the merge is better).",
                   d),
       fmt::format("Checkpoints per window, W = D = {} steps", d), "checkpoints in the window",
       "WSM - WSD (nats)", series);
}

void score_vs_window(Figures& out, const CompareReport& r, const fs::path& dir) {
  std::map<std::string, Series> by_shape;
  double lo = 1e300, hi = -1e300;
  std::optional<double> raw;
  for (const auto& m : r.rows) {
    if (!m.score || !std::isfinite(*m.score)) continue;  // failed evaluations are not drawn
    if (m.method == Method::raw) raw = *m.score;
    if (m.method != Method::wsm) continue;
    auto& s = by_shape[spec_name(m)];
    s.name = spec_name(m), s.mark = Mark::line_points, s.colour = shape_colour(m.shape);
    s.xs.push_back(double(m.window)), s.ys.push_back(*m.score);
    lo = std::min(lo, double(m.window)), hi = std::max(hi, double(m.window));
  }
  std::vector<Series> series;
  for (auto& [name, s] : by_shape) series.push_back(std::move(s));
  if (lo > hi) return;
  if (raw) series.push_back({"newest raw checkpoint", {lo, hi}, {*raw, *raw}, Mark::line, {}, kGrey});
  for (const auto& [b, colour] : scored_baselines(r.rows))
    series.push_back({"baseline " + b->name, {lo, hi}, {*b->score, *b->score}, Mark::line, {}, colour});
  save(out, dir, "score_vs_window",
       "Score of each merged model against its merge window, per shape; the newest raw checkpoint and each baseline "
       "(horizontal lines) for reference.",
       "Score against merge window", "merge window (steps)", r.order == ScoreOrder::lower_is_better ? "score (lower is better)" : "score (higher is better)",
       series);
}

// Each merge's score minus each baseline's, per shape against the window, with the noise margin as
// error bars when the evaluator reports one; zero is "as good as the baseline".
void merge_minus_baseline(Figures& out, const CompareReport& r, const fs::path& dir) {
  const auto comparisons = baseline_comparisons(r.rows, r.order);
  if (comparisons.empty()) return;
  std::map<std::pair<std::string, std::string>, Series> by;  // (baseline, shape)
  double lo = 1e300, hi = -1e300;
  for (const auto& c : comparisons) {
    auto& s = by[{c.baseline->name, spec_name(*c.merge)}];
    s.name = spec_name(*c.merge) + " - " + c.baseline->name, s.mark = Mark::line_points, s.colour = shape_colour(c.merge->shape);
    s.xs.push_back(double(c.merge->window)), s.ys.push_back(c.difference), s.yerr.push_back(c.margin.value_or(std::nan("")));
    lo = std::min(lo, double(c.merge->window)), hi = std::max(hi, double(c.merge->window));
  }
  std::vector<Series> series;
  for (auto& [key, s] : by) {
    std::vector<std::size_t> order(s.xs.size());  // by window, for the line
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return s.xs[a] < s.xs[b]; });
    Series sorted{s.name, {}, {}, s.mark, {}, s.colour};
    for (auto i : order) sorted.xs.push_back(s.xs[i]), sorted.ys.push_back(s.ys[i]), sorted.yerr.push_back(s.yerr[i]);
    series.push_back(std::move(sorted));
  }
  const auto baselines = scored_baselines(r.rows);
  series.push_back({"as good as the baseline", {lo, hi}, {0, 0}, Mark::line, {}, baselines.front().second});
  save(out, dir, "merge_minus_baseline",
       std::string("Each merge's score minus each baseline's, per shape against the merge window (") +
           (r.order == ScoreOrder::lower_is_better ? "below zero: the merge is better" : "above zero: the merge is better") +
           "); error bars: 2 combined standard errors when the evaluator reports them.",
       "Merges against the baselines", "merge window (steps)", "score difference to the baseline", series);
}

}  // namespace

Figures draw_figures(const CompareReport& r, const fs::path& dir) {
  Figures out;
  if (r.mode == Mode::study) {
    const auto cells = summarize_study(r.rows, r.order);
    if (cells.empty()) return out;
    std::int64_t longest = 0;
    for (const auto& c : cells) longest = std::max(longest, c.duration);
    const std::uint64_t seed = cells.front().seeds.front();
    loss_vs_step(out, r, dir, seed, longest);
    wsm_vs_wsd(out, dir, cells);
    lr_picture(out, r, dir, longest);
    weights_picture(out, r, dir, longest, seed);
    const auto granularity = summarize_granularity(r.rows);
    std::set<std::int64_t> durations;
    for (const auto& g : granularity) durations.insert(g.duration);
    for (auto d : durations) granularity_picture(out, dir, granularity, d);
  } else {
    score_vs_window(out, r, dir);
    merge_minus_baseline(out, r, dir);
    std::int64_t longest = 0;
    for (const auto& m : r.rows)
      if (m.method == Method::wsm) longest = std::max(longest, m.window);
    weights_picture(out, r, dir, longest, std::nullopt);
  }
  return out;
}

}  // namespace wsm::tools::compare
