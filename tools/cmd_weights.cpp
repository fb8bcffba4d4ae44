// `wsm weights`: the merge weights c_j (oldest first) for a decay shape, and the equivalent decay
// w_i (docs/method-guide.md's duality), or the other way round from a user table.
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"
#include "wsm/schedules/text.h"
#include "tools/commands.h"

namespace wsm::tools {
namespace {

struct WeightsArgs {
  std::string shape;
  int count = 0;
  std::optional<double> floor;
  std::optional<double> alpha;
  std::vector<double> weights_table;
  std::vector<double> decay_table;
  bool json = false;
  bool allow_non_monotone = false;
  std::vector<std::int64_t> positions;  // window mode: the checkpoint steps (or tokens) that exist
  std::int64_t window = 0;
};

MergeSpec spec_from(const WeightsArgs& a, int& count) {
  const int given = !a.shape.empty() + !a.weights_table.empty() + !a.decay_table.empty();
  if (given != 1) throw Error("wsm weights: give exactly one of --shape, --weights, --decay");
  MergeSpec spec;
  if (!a.shape.empty()) {
    spec = parse_merge_spec(a.shape);  // a full spec works too: "cosine,floor=0.1", "ema:alpha=0.2"
    if (a.alpha) {
      const bool ema = spec.ema() || (spec.shape() && spec.shape()->shape == DecayShape::exponential);
      if (!ema) throw Error("wsm weights: --alpha applies to --shape ema only");
      spec = parse_merge_spec("ema:alpha=" + text::format_number(*a.alpha));
    }
    if (a.floor) spec.set_floor(*a.floor);
    if (a.count < 1 && a.window == 0)
      throw Error("wsm weights: --count N (the number of checkpoints, k+1) is required with --shape");
  } else {
    if (a.floor || a.alpha) throw Error("wsm weights: --floor/--alpha apply to --shape only");
    TableRule table;
    table.kind = a.decay_table.empty() ? TableRule::Kind::merge_weights : TableRule::Kind::decay;
    table.values = a.decay_table.empty() ? a.weights_table : a.decay_table;
    table.allow_non_monotone = a.allow_non_monotone;
    spec = std::move(table);
  }
  if (a.allow_non_monotone && !spec.table()) throw Error("wsm weights: --allow-non-monotone applies to --weights/--decay");
  count = a.count;
  if (count == 0 && spec.table())
    count = static_cast<int>(spec.table()->values.size()) + (spec.table()->kind == TableRule::Kind::decay ? 1 : 0);
  return spec;
}

void run(const WeightsArgs& a) {
  int count = 0;
  const MergeSpec spec = spec_from(a, count);
  std::vector<double> c, w;
  std::vector<std::int64_t> selected;  // window mode only
  std::string rule = sampling_rule(spec, false);
  if (a.window != 0 || !a.positions.empty()) {
    if (a.window <= 0 || a.positions.empty())
      throw Error("wsm weights: --window and --positions go together (a window in steps and the checkpoint steps)");
    if (a.count != 0) throw Error("wsm weights: --count does not apply with --window (the window selects)");
    const auto sel = select_window(spec, a.positions, a.window);
    for (std::size_t i : sel.indices) selected.push_back(a.positions[i]);
    c = sel.weights;
    w = sel.decay;
    count = static_cast<int>(c.size());
    rule = sampling_rule(spec, true);
  } else {
    c = merge_weights(spec, count);
    w = merge_weights_to_decay(c);
  }
  if (a.json) {
    nlohmann::json out = {{"weights", c}, {"decay", w}};
    if (!selected.empty()) out["positions"] = selected;
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  fmt::print("# spec {}, {} checkpoints (k={}), sampling {}, oldest first\n", spec.to_string(), count, count - 1, rule);
  if (!selected.empty()) fmt::print("# window ({}, {}]\n", selected.back() - a.window, selected.back());
  fmt::print("# c_j: merge weight of checkpoint j; w_j: fraction of update j (checkpoint j-1 -> j) kept\n");
  // The position column appears in window mode only.
  const auto pos = [&](std::size_t j) {
    return selected.empty() ? std::string() : fmt::format("  {:>12}", selected[j]);
  };
  fmt::print("{:>10}{}  {:>12}  {:>12}\n", "checkpoint", selected.empty() ? "" : fmt::format("  {:>12}", "position"),
             "c_j", "w_j");
  for (std::size_t j = 0; j < c.size(); ++j) {
    if (j == 0)
      fmt::print("{:>10}{}  {:>12.8f}  {:>12}\n", j, pos(j), c[j], "-");
    else
      fmt::print("{:>10}{}  {:>12.8f}  {:>12.8f}\n", j, pos(j), c[j], w[j - 1]);
  }
}

}  // namespace

void add_weights_command(CLI::App& app) {
  auto args = std::make_shared<WeightsArgs>();
  auto* cmd = app.add_subcommand("weights", "Merge weights for a decay shape (and the equivalent decay)");
  cmd->add_option("--shape", args->shape,
                  "Decay shape: linear, cosine, 1-sqrt, inverse-sqrt, exponential (ema), wma, or a merge spec "
                  "such as 'cosine,floor=0.1' or 'ema:alpha=0.2'");
  cmd->add_option("--count", args->count, "Number of checkpoints in the window (k+1)")->check(CLI::PositiveNumber);
  cmd->add_option("--floor", args->floor, "Minimum LR fraction r: w = r + (1-r) f(t) (inverse-sqrt: its end value)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--alpha", args->alpha, "PMA's EMA coefficient (with --shape ema)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--weights", args->weights_table, "A table of merge weights c_0..c_k, oldest first (normalised)")
      ->delimiter(',');
  cmd->add_option("--decay", args->decay_table, "A table of decay values w_1..w_k (non-increasing, in [0,1])")
      ->delimiter(',');
  cmd->add_option("--window", args->window,
                  "Merge window in steps or tokens: select the checkpoints in (newest - WINDOW, newest]")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--positions", args->positions,
                  "With --window: the steps (or tokens) of the checkpoints that exist, ascending; "
                  "uneven spacing is fine")
      ->delimiter(',');
  cmd->add_flag("--allow-non-monotone", args->allow_non_monotone,
                "Accept a non-monotone decay (gives negative merge weights)");
  cmd->add_flag("--json", args->json, "Print one JSON object: {\"weights\": [c_0..c_k], \"decay\": [w_1..w_k]}");
  cmd->footer(
      "Examples:\n"
      "  wsm weights --shape 1-sqrt --count 5\n"
      "  wsm weights --shape cosine --count 8 --floor 0.1 --json\n"
      "  wsm weights --shape ema --alpha 0.2 --count 6\n"
      "  wsm weights --decay 1,0.5,0.25        (4 checkpoints)\n"
      "  wsm weights --shape 1-sqrt --window 1000 --positions 0,450,700,900,950,1300,1450\n"
      "Sampling rule (docs/method-guide.md): w_i = f(i/(k+1)), i = 1..k; c_0 = 1 - w_1, c_j = w_j - w_{j+1}, c_k = "
      "w_k.\n");
  cmd->callback([args] { run(*args); });
}

}  // namespace wsm::tools
