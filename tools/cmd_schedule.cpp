// `wsm schedule`: an LR schedule as a table, CSV, JSON or plot, optionally with the step-wise LR
// that a checkpoint merge over the last window emulates (docs/method-guide.md's duality, step by step).
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "wsm/core/error.h"
#include "wsm/schedules/emulate.h"
#include "wsm/schedules/schedule.h"
#include "wsm/schedules/text.h"
#include "wsm/schedules/window.h"
#include "tools/commands.h"
#include "tools/plot.h"

namespace wsm::tools {
namespace {

struct ScheduleArgs {
  std::string spec;
  std::int64_t steps = 0;
  std::int64_t every = 0;
  bool csv = false;
  bool json = false;
  std::string plot;
  std::string compare;
  std::int64_t merge_every = 0;
};

struct Comparison {
  MergeSpec spec;
  std::int64_t window = 0;
  std::int64_t interval = 0;
  MergeEmulation emulation;
};

// SPEC@WINDOW, as `wsm serve --emulate` reads it (wsm/schedules/window.h); the window is in steps.
// The old SHAPE:WINDOW form (window after the last ':') is still read, with a warning, as serve does.
Comparison parse_compare(const ScheduleArgs& a) {
  SpecWindow sw;
  if (a.compare.find('@') == std::string::npos && a.compare.rfind(':') != std::string::npos) {
    const auto colon = a.compare.rfind(':');
    sw = {parse_merge_spec(a.compare.substr(0, colon)), parse_window(a.compare.substr(colon + 1))};
    spdlog::warn("--compare-merge '{}': the SHAPE:WINDOW form is deprecated; write SPEC@WINDOW, e.g. 1-sqrt@2000",
                 a.compare);
  } else {
    sw = parse_spec_at_window(a.compare, "--compare-merge");
  }
  if (sw.window.axis != Axis::steps)
    throw Error("--compare-merge '" + a.compare + "': the window is in steps here (the schedule's axis), not tokens");
  Comparison c;
  c.spec = sw.spec;
  c.window = sw.window.value;
  c.interval = a.merge_every > 0 ? a.merge_every : std::max<std::int64_t>(1, c.window / 8);
  c.emulation = emulate_merge(c.spec, a.steps, c.window, c.interval);
  return c;
}

std::string compare_label(const Comparison& c) {
  return fmt::format("WSM merge {} over {} steps ({} ckpts)", c.spec.to_string(), c.window, c.emulation.positions.size());
}

// The run whose checkpoints the merge averages. A WSD schedule is what WSM replaces: its merge
// averages the constant-LR trunk (the same warmup and peak, no decay), so the overlay compares the
// real decay with the emulated one instead of applying a decay on top of the decay. Any other
// schedule is merged as it is (checkpoints of that very run).
Schedule merged_run(const Schedule& s) {
  if (s.kind != ScheduleKind::wsd) return s;
  return Schedule{.kind = ScheduleKind::stable, .peak = s.peak, .warmup = s.warmup};
}

void run(const ScheduleArgs& a) {
  if (a.steps <= 0) throw Error("wsm schedule: --steps must be positive");
  const Schedule sched = parse_schedule(a.spec).with_total(a.steps);
  std::optional<Comparison> cmp;
  if (!a.compare.empty()) cmp = parse_compare(a);

  const std::int64_t every = a.every > 0 ? a.every : std::max<std::int64_t>(1, a.steps / 20);
  std::vector<std::int64_t> rows;
  for (std::int64_t s = 0; s < a.steps; s += every) rows.push_back(s);
  if (rows.back() != a.steps - 1) rows.push_back(a.steps - 1);  // always show where the run ends
  const Schedule trunk = merged_run(sched);
  const auto merged = [&](std::int64_t s) {
    return trunk.lr_at(s) * cmp->emulation.factor[static_cast<std::size_t>(s)];
  };

  if (a.json) {
    nlohmann::json out;
    out["schedule"] = sched.to_string();
    out["steps"] = a.steps;
    out["every"] = every;
    std::vector<double> lr;
    for (auto s : rows) lr.push_back(sched.lr_at(s));
    out["step"] = rows;
    out["lr"] = lr;
    if (cmp) {
      std::vector<double> mlr;
      for (auto s : rows) mlr.push_back(merged(s));
      out["merge"] = {{"spec", cmp->spec.to_string()},
                      {"window", cmp->window},
                      {"interval", cmp->interval},
                      {"sampling", sampling_rule(cmp->spec, true)},
                      {"checkpoints", cmp->emulation.positions},
                      {"weights", cmp->emulation.weights},
                      {"decay", cmp->emulation.decay},
                      {"lr", mlr}};
    }
    std::printf("%s\n", out.dump().c_str());
  } else if (a.csv) {
    fmt::print("step,lr{}\n", cmp ? ",merge_lr" : "");
    for (auto s : rows) {
      if (cmp)
        fmt::print("{},{},{}\n", s, sched.lr_at(s), merged(s));
      else
        fmt::print("{},{}\n", s, sched.lr_at(s));
    }
  } else {
    fmt::print("# {} over {} steps\n", sched.to_string(), a.steps);
    if (cmp) fmt::print("# {}: checkpoints at {}\n", compare_label(*cmp), fmt::join(cmp->emulation.positions, ", "));
    fmt::print("{:>10}  {:>14}{}\n", "step", "lr", cmp ? fmt::format("  {:>14}", "merge_lr") : "");
    for (auto s : rows)
      fmt::print("{:>10}  {:>14.6e}{}\n", s, sched.lr_at(s), cmp ? fmt::format("  {:>14.6e}", merged(s)) : "");
  }

  if (!a.plot.empty()) {
    // Every step up to 20k points keeps the merge's staircase exact; longer runs are thinned.
    const std::int64_t stride = std::max<std::int64_t>(1, a.steps / 20000);
    std::vector<Series> series(1);
    series[0].name = sched.to_string();
    if (cmp) {
      series.push_back({compare_label(*cmp), {}, {}, Mark::staircase});
    }
    for (std::int64_t s = 0; s < a.steps; s += stride) {
      series[0].xs.push_back(static_cast<double>(s));
      series[0].ys.push_back(sched.lr_at(s));
      if (cmp) {
        series[1].xs.push_back(static_cast<double>(s));
        series[1].ys.push_back(merged(s));
      }
    }
    plot_lines(a.plot, "wsm schedule: " + sched.to_string(), "step", "learning rate", series);
    std::fprintf(stderr, "wsm schedule: wrote %s\n", a.plot.c_str());
  }
}

}  // namespace

void add_schedule_command(CLI::App& app) {
  auto args = std::make_shared<ScheduleArgs>();
  auto* cmd = app.add_subcommand("schedule", "Print or plot an LR schedule (and the LR a merge emulates)");
  cmd->add_option("spec", args->spec,
                  "Schedule text form, e.g. 'warmup=500,stable,peak=3e-4' or "
                  "'wsd:warmup=500,decay=2000,shape=1-sqrt,floor=0'")
      ->required();
  cmd->add_option("--steps", args->steps, "Run length in steps (also fills total= when the spec leaves it out)")
      ->required();
  cmd->add_option("--every", args->every, "Print every K-th step (default: steps/20); the last step always")
      ->check(CLI::PositiveNumber);
  auto* csv = cmd->add_flag("--csv", args->csv, "Print CSV: step,lr[,merge_lr]");
  auto* json = cmd->add_flag("--json", args->json, "Print one JSON object");
  csv->excludes(json);
  cmd->add_option("--plot", args->plot, "Write a plot (.svg or .png)");
  cmd->add_option("--compare-merge", args->compare,
                  "SPEC@WINDOW (as serve --emulate): overlay the step-wise LR a merge over the last WINDOW steps "
                  "emulates (for a wsd: "
                  "schedule, a merge of its constant-LR trunk, the run WSM trains instead)");
  cmd->add_option("--merge-every", args->merge_every,
                  "Checkpoint interval for --compare-merge (default: WINDOW/8)")
      ->check(CLI::PositiveNumber);
  cmd->footer(
      "Examples:\n"
      "  wsm schedule 'warmup=500,stable,peak=3e-4' --steps 20000 --every 1000\n"
      "  wsm schedule 'wsd:warmup=500,decay=4000,shape=1-sqrt' --steps 20000 --csv --every 100\n"
      "  wsm schedule 'warmup=500,stable,peak=3e-4' --steps 20000 --compare-merge 1-sqrt@4000 --plot lr.svg\n"
      "Kinds: stable, wsd, cosine, inverse-sqrt, linear; see docs/schedules.md.\n");
  cmd->callback([args] { run(*args); });
}

}  // namespace wsm::tools
