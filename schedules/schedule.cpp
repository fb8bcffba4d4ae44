// LR schedules as functions of the step, and their short text form.
#include "wsm/schedules/schedule.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "wsm/core/error.h"
#include "wsm/schedules/text.h"

namespace wsm {
namespace {

struct KindName {
  ScheduleKind kind;
  std::string_view name;
};
constexpr KindName kKindNames[] = {
    {ScheduleKind::stable, "stable"}, {ScheduleKind::wsd, "wsd"}, {ScheduleKind::cosine, "cosine"},
    {ScheduleKind::inverse_sqrt, "inverse-sqrt"}, {ScheduleKind::linear, "linear"},
};

std::string_view kind_name(ScheduleKind k) {
  for (const auto& n : kKindNames)
    if (n.kind == k) return n.name;
  return "unknown";
}

std::optional<ScheduleKind> parse_kind(std::string_view name) {
  for (const auto& n : kKindNames)
    if (n.name == name) return n.kind;
  if (name == "constant" || name == "wsm") return ScheduleKind::stable;
  if (name == "inverse_sqrt" || name == "rsqrt") return ScheduleKind::inverse_sqrt;
  return std::nullopt;
}

bool uses_total(ScheduleKind k) {
  return k == ScheduleKind::wsd || k == ScheduleKind::cosine || k == ScheduleKind::linear;
}
bool uses_floor(ScheduleKind k) { return k != ScheduleKind::stable; }

void validate(const Schedule& s, const std::string& where) {
  const auto fail = [&](const std::string& why) { return Error("schedule '" + where + "': " + why); };
  if (!(s.peak > 0.0) || !std::isfinite(s.peak)) throw fail("peak must be a positive number");
  if (s.warmup < 0) throw fail("warmup must be >= 0");
  if (s.total < 0) throw fail("total must be >= 0");
  if (s.decay < 0) throw fail("decay must be >= 0");
  if (!(s.floor >= 0.0 && s.floor <= 1.0)) throw fail("floor must be in [0, 1]");
  if (s.kind == ScheduleKind::wsd) {
    if (s.decay <= 0) throw fail("wsd needs decay=STEPS > 0");
    if (s.total > 0 && s.warmup + s.decay > s.total)
      throw fail("warmup + decay (" + std::to_string(s.warmup + s.decay) + ") exceeds total (" +
                 std::to_string(s.total) + ")");
  }
  if ((s.kind == ScheduleKind::cosine || s.kind == ScheduleKind::linear) && s.total > 0 && s.total <= s.warmup)
    throw fail("total must exceed warmup");
}

}  // namespace

bool Schedule::needs_total() const { return uses_total(kind) && total == 0; }

Schedule Schedule::with_total(std::int64_t steps) const {
  Schedule s = *this;
  if (s.needs_total()) s.total = steps;
  validate(s, s.to_string());
  return s;
}

double Schedule::lr_at(std::int64_t step) const {
  if (needs_total())
    throw Error("schedule '" + to_string() + "': needs total=STEPS (or with_total) to know where it ends");
  step = std::max<std::int64_t>(step, 0);
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double r = floor;
  switch (kind) {
    case ScheduleKind::stable: return peak;
    case ScheduleKind::wsd: {
      const std::int64_t start = total - decay;
      if (step < start) return peak;
      const double t = static_cast<double>(step - start) / static_cast<double>(decay);
      // decay_value clamps t to [0,1] and applies the floor (inverse-sqrt: the floor is its end value).
      return peak * decay_value(decay_shape, t, r);
    }
    case ScheduleKind::cosine:
    case ScheduleKind::linear: {
      const double t = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(total - warmup));
      return peak * decay_value(kind == ScheduleKind::cosine ? DecayShape::cosine : DecayShape::linear, t, r);
    }
    case ScheduleKind::inverse_sqrt: {
      const double w = static_cast<double>(std::max<std::int64_t>(warmup, 1));
      return peak * std::max(r, std::sqrt(w / static_cast<double>(step + 1)));
    }
  }
  return peak;
}

std::string Schedule::to_string() const {
  std::vector<std::string> parts;
  if (warmup != 0) parts.push_back("warmup=" + text::format_number(warmup));
  if (kind == ScheduleKind::wsd) parts.push_back("decay=" + text::format_number(decay));
  if (kind == ScheduleKind::wsd) parts.push_back("shape=" + std::string(decay_shape_name(decay_shape)));
  if (uses_total(kind) && total != 0) parts.push_back("total=" + text::format_number(total));
  if (uses_floor(kind) && floor != 0.0) parts.push_back("floor=" + text::format_number(floor));
  parts.push_back("peak=" + text::format_number(peak));
  std::string out;
  if (kind == ScheduleKind::stable) {
    // The form: "warmup=500,stable,peak=3e-4".
    parts.insert(parts.begin() + (warmup != 0 ? 1 : 0), "stable");
  } else {
    out = std::string(kind_name(kind)) + ":";
  }
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += ',';
    out += parts[i];
  }
  return out;
}

Schedule parse_schedule(std::string_view text_form) {
  const std::string original(text::trim(text_form));
  const auto fail = [&](const std::string& why) { return Error("schedule '" + original + "': " + why); };
  if (original.empty()) throw fail("empty (e.g. warmup=500,stable,peak=3e-4)");
  std::string body = original;
  Schedule s;
  std::optional<ScheduleKind> kind;
  if (auto colon = body.find(':'); colon != std::string::npos) {
    const auto name = text::trim(std::string_view(body).substr(0, colon));
    kind = parse_kind(name);
    if (!kind) throw fail("unknown schedule kind '" + std::string(name) + "' (expected stable, wsd, cosine, inverse-sqrt, linear)");
    body = body.substr(colon + 1);
  }
  bool saw[5] = {};  // warmup, total, decay, shape, floor: for "does not apply" errors
  for (const auto raw : text::split(body, ',')) {
    const auto tok = text::trim(raw);
    if (tok.empty()) throw fail("empty field");
    const auto eq = tok.find('=');
    if (eq == std::string_view::npos) {
      const auto k = parse_kind(tok);
      if (!k) throw fail("unexpected '" + std::string(tok) + "'");
      if (kind && *kind != *k) throw fail("two schedule kinds ('" + std::string(kind_name(*kind)) + "' and '" + std::string(tok) + "')");
      kind = k;
      continue;
    }
    const auto key = tok.substr(0, eq);
    const auto value = tok.substr(eq + 1);
    const std::string what = "schedule '" + original + "': " + std::string(key);
    if (key == "peak" || key == "lr") s.peak = text::parse_double(value, what);
    else if (key == "warmup") { s.warmup = text::parse_int(value, what); saw[0] = true; }
    else if (key == "total" || key == "steps") { s.total = text::parse_int(value, what); saw[1] = true; }
    else if (key == "decay") { s.decay = text::parse_int(value, what); saw[2] = true; }
    else if (key == "shape") {
      const auto sh = parse_decay_shape(value);
      if (!ambiguous_shape_hint(value).empty()) throw fail(ambiguous_shape_hint(value));
      if (!sh || *sh == DecayShape::wma)
        throw fail("unknown decay shape '" + std::string(value) + "' (expected linear, cosine, 1-sqrt, inverse-sqrt, exponential)");
      s.decay_shape = *sh;
      saw[3] = true;
    } else if (key == "floor") { s.floor = text::parse_double(value, what); saw[4] = true; }
    else throw fail("unknown key '" + std::string(key) + "' (expected warmup, peak, total, decay, shape, floor)");
  }
  s.kind = kind.value_or(ScheduleKind::stable);
  // Keys that do not apply are errors, so parse(to_string()) == *this holds without hidden state.
  if (saw[1] && !uses_total(s.kind)) throw fail("total= does not apply to " + std::string(kind_name(s.kind)));
  if ((saw[2] || saw[3]) && s.kind != ScheduleKind::wsd) throw fail("decay=/shape= apply to wsd only");
  if (saw[4] && !uses_floor(s.kind)) throw fail("floor= does not apply to stable");
  validate(s, original);
  return s;
}

}  // namespace wsm
