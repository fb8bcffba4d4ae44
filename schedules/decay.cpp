// The WSM duality (docs/method-guide.md): decay w_1..w_k <-> merge weights c_0..c_k, shape sampling, the
// merge-spec text form, and window selection for unevenly spaced checkpoints.
#include "wsm/schedules/decay.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <optional>
#include <span>
#include <string>

#include "wsm/core/error.h"
#include "wsm/schedules/text.h"

namespace wsm {
namespace {

constexpr double kTolerance = 1e-12;  // rounding noise allowed in the monotonicity / range checks
constexpr double kInverseSqrtDefaultFloor = 0.1;

struct ShapeName {
  DecayShape shape;
  std::string_view name;
};
constexpr ShapeName kShapeNames[] = {
    {DecayShape::linear, "linear"},       {DecayShape::cosine, "cosine"},
    {DecayShape::one_minus_sqrt, "1-sqrt"}, {DecayShape::inverse_sqrt, "inverse-sqrt"},
    {DecayShape::exponential, "exponential"}, {DecayShape::wma, "wma"},
};

std::string shape_list() {
  std::string out;
  for (const auto& s : kShapeNames) {
    if (!out.empty()) out += ", ";
    out += s.name;
  }
  return out + ", ema";
}

void check_floor(double floor) {
  if (!(floor >= 0.0 && floor <= 1.0))
    throw Error("decay floor " + text::format_number(floor) + " is outside [0, 1]");
}

// A floor r keeps a fraction r of every update: w' = r + (1-r) w, i.e. c' = (1-r) c + r e_k.
void apply_floor(std::vector<double>& c, double floor) {
  for (double& x : c) x *= 1.0 - floor;
  c.back() += floor;
}

// WMA: c_j proportional to j+1.
std::vector<double> wma_weights(int count, double floor) {
  const double total = 0.5 * count * (count + 1.0);  // sum of (j+1) for j = 0..k
  std::vector<double> c(static_cast<std::size_t>(count));
  for (int j = 0; j < count; ++j) c[static_cast<std::size_t>(j)] = (j + 1.0) / total;
  apply_floor(c, floor);
  return c;
}

std::vector<double> ema_weights(const EmaRule& ema, int count) {
  const int k = count - 1;
  const double a = ema.alpha;
  std::vector<double> c(static_cast<std::size_t>(count));
  c[0] = std::pow(1.0 - a, k);
  for (int j = 1; j <= k; ++j) c[static_cast<std::size_t>(j)] = a * std::pow(1.0 - a, k - j);
  apply_floor(c, ema.floor);
  return c;
}

void validate(const MergeSpec& spec) {
  check_floor(spec.floor());
  if (const EmaRule* ema = spec.ema(); ema && !(ema->alpha > 0.0 && ema->alpha <= 1.0))
    throw Error("merge spec: ema alpha " + text::format_number(ema->alpha) + " is outside (0, 1]");
}

std::vector<double> table_weights(const MergeSpec& spec, int count) {
  const TableRule& table = *spec.table();
  const auto n = static_cast<std::size_t>(count);
  if (table.kind == TableRule::Kind::decay) {
    if (table.values.size() + 1 != n)
      throw Error("merge spec '" + spec.to_string() + "': a decay table of " + std::to_string(table.values.size()) +
                  " values needs " + std::to_string(table.values.size() + 1) + " checkpoints, got " +
                  std::to_string(count));
    return decay_to_merge_weights(table.values, table.allow_non_monotone);
  }
  if (table.values.size() != n)
    throw Error("merge spec '" + spec.to_string() + "': a weight table of " + std::to_string(table.values.size()) +
                " values needs " + std::to_string(table.values.size()) + " checkpoints, got " +
                std::to_string(count));
  double sum = 0.0;
  for (std::size_t j = 0; j < n; ++j) {
    const double c = table.values[j];
    if (!std::isfinite(c)) throw Error("merge spec: weight c_" + std::to_string(j) + " is not finite");
    if (c < 0.0 && !table.allow_non_monotone)
      throw Error("merge spec '" + spec.to_string() + "': weight c_" + std::to_string(j) + " = " +
                  text::format_number(c) + " is negative (add allow-non-monotone to accept it)");
    sum += c;
  }
  if (!(std::fabs(sum) > kTolerance)) throw Error("merge spec '" + spec.to_string() + "': weights sum to 0");
  // Tables are normalised so the merge is an average (docs/method-guide.md: sum c_j = 1).
  std::vector<double> c(table.values);
  for (double& x : c) x /= sum;
  return c;
}

// Weights of a per-checkpoint rule (wma, EMA, table) for `count` checkpoints.
std::vector<double> per_checkpoint_weights(const MergeSpec& spec, int count) {
  if (const EmaRule* ema = spec.ema()) return ema_weights(*ema, count);
  if (spec.table()) return table_weights(spec, count);
  return wma_weights(count, spec.shape()->floor);
}

}  // namespace

std::string_view decay_shape_name(DecayShape s) {
  for (const auto& n : kShapeNames)
    if (n.shape == s) return n.name;
  return "unknown";
}

std::optional<DecayShape> parse_decay_shape(std::string_view name) {
  name = text::trim(name);
  for (const auto& n : kShapeNames)
    if (n.name == name) return n.shape;
  if (name == "ema" || name == "exp") return DecayShape::exponential;
  if (name == "one-minus-sqrt" || name == "1_sqrt") return DecayShape::one_minus_sqrt;
  if (name == "inverse_sqrt" || name == "inv-sqrt" || name == "rsqrt") return DecayShape::inverse_sqrt;
  if (name == "cos") return DecayShape::cosine;
  if (name == "mean" || name == "sma" || name == "uniform") return DecayShape::linear;
  return std::nullopt;
}

std::string ambiguous_shape_hint(std::string_view name) {
  if (text::trim(name) != "sqrt") return {};
  return "'sqrt' is ambiguous: write 1-sqrt (f = 1 - sqrt(t), Hagele et al.; the paper's best) or inverse-sqrt "
         "(f = 1/sqrt(1 + a t), ending at the floor)";
}

double decay_value(DecayShape s, double t, double floor) {
  check_floor(floor);
  t = std::clamp(t, 0.0, 1.0);
  double f = 0.0;
  switch (s) {
    case DecayShape::linear: f = 1.0 - t; break;
    case DecayShape::cosine: f = 0.5 * (1.0 + std::cos(std::numbers::pi * t)); break;
    case DecayShape::one_minus_sqrt: f = 1.0 - std::sqrt(t); break;
    case DecayShape::inverse_sqrt: {
      // The floor is this shape's end value (f(1) = r); not applied a second time.
      const double r = floor > 0.0 ? floor : kInverseSqrtDefaultFloor;
      const double a = 1.0 / (r * r) - 1.0;
      return 1.0 / std::sqrt(1.0 + a * t);
    }
    // docs/schedules.md: the paper's EMA figure. f(0) = 0.9, so the oldest checkpoint keeps c_0 >= 0.1.
    case DecayShape::exponential: f = 1.0 - std::pow(0.1, 1.0 - t); break;
    // WMA is defined on indices (c_j ~ j+1); its continuous limit as k grows is 1 - t^2.
    case DecayShape::wma: f = 1.0 - t * t; break;
  }
  return floor + (1.0 - floor) * f;
}

std::vector<double> decay_to_merge_weights(std::span<const double> w, bool allow_non_monotone) {
  const std::size_t k = w.size();
  for (std::size_t i = 0; i < k; ++i) {
    const double wi = w[i];
    if (!std::isfinite(wi)) throw Error("decay value w_" + std::to_string(i + 1) + " is not finite");
    if (allow_non_monotone) continue;
    if (wi < -kTolerance || wi > 1.0 + kTolerance)
      throw Error("decay value w_" + std::to_string(i + 1) + " = " + text::format_number(wi) +
                  " is outside [0, 1] (allow-non-monotone / --allow-non-monotone accepts it)");
    if (i > 0 && wi > w[i - 1] + kTolerance)
      throw Error("decay is not non-increasing: w_" + std::to_string(i + 1) + " = " + text::format_number(wi) +
                  " > w_" + std::to_string(i) + " = " + text::format_number(w[i - 1]) +
                  " (it needs negative merge weights; allow non-monotone decays to accept them)");
  }
  std::vector<double> c(k + 1);
  c[0] = 1.0 - (k > 0 ? w[0] : 0.0);
  for (std::size_t j = 1; j < k; ++j) c[j] = w[j - 1] - w[j];
  if (k > 0) c[k] = w[k - 1];
  if (!allow_non_monotone)
    for (double& x : c) x = std::max(x, 0.0);  // clip rounding noise inside the tolerance
  return c;
}

std::vector<double> merge_weights_to_decay(std::span<const double> c) {
  if (c.empty()) throw Error("merge weights are empty (need at least one checkpoint)");
  const std::size_t k = c.size() - 1;
  std::vector<double> w(k);
  double tail = 0.0;
  for (std::size_t i = k; i >= 1; --i) {
    tail += c[i];
    w[i - 1] = tail;
  }
  return w;
}

double MergeSpec::floor() const {
  if (const ShapeRule* s = shape()) return s->floor;
  if (const EmaRule* e = ema()) return e->floor;
  return 0.0;
}

void MergeSpec::set_floor(double value) {
  if (auto* s = std::get_if<ShapeRule>(&rule)) s->floor = value;
  else if (auto* e = std::get_if<EmaRule>(&rule)) e->floor = value;
  else throw Error("merge spec '" + to_string() + "': floor does not apply to a table");
}

bool MergeSpec::per_checkpoint() const {
  const ShapeRule* s = shape();
  return !s || s->shape == DecayShape::wma;
}

std::string MergeSpec::kind_name() const {
  if (const ShapeRule* s = shape()) return std::string(decay_shape_name(s->shape));
  if (ema()) return "ema";
  return table()->kind == TableRule::Kind::decay ? "decay" : "weights";
}

std::string MergeSpec::to_string() const {
  std::string out;
  if (const ShapeRule* s = shape()) {
    out = std::string(decay_shape_name(s->shape));
  } else if (const EmaRule* e = ema()) {
    out = "ema:alpha=" + text::format_number(e->alpha);
  } else {
    const TableRule& t = *table();
    out = t.kind == TableRule::Kind::decay ? "decay=" : "weights=";
    for (std::size_t i = 0; i < t.values.size(); ++i) {
      if (i) out += ',';
      out += text::format_number(t.values[i]);
    }
    if (t.allow_non_monotone) out += ",allow-non-monotone";
  }
  if (floor() != 0.0) out += ",floor=" + text::format_number(floor());
  return out;
}

namespace {
// The options after a spec's head: "floor=0.1", "alpha=0.2", "allow-non-monotone", table values.
struct SpecOptions {
  std::optional<double> floor, alpha;
  bool allow_non_monotone = false;
};

SpecOptions parse_spec_options(std::span<const std::string_view> tokens, std::vector<double>* table,
                               const std::string& original) {
  const auto fail = [&](const std::string& why) { return Error("merge spec '" + original + "': " + why); };
  SpecOptions o;
  bool in_table = table != nullptr;
  for (const auto raw : tokens) {
    const auto tok = text::trim(raw);
    if (in_table && text::is_number(tok)) {
      table->push_back(text::parse_double(tok, "merge spec '" + original + "'"));
      continue;
    }
    in_table = false;
    if (tok == "allow-non-monotone" || tok == "allow_non_monotone") {
      o.allow_non_monotone = true;
      continue;
    }
    const auto eq = tok.find('=');
    if (eq == std::string_view::npos) throw fail("unexpected '" + std::string(tok) + "'");
    const auto key = tok.substr(0, eq);
    const auto value = tok.substr(eq + 1);
    if (key == "floor")
      o.floor = text::parse_double(value, "merge spec '" + original + "': floor");
    else if (key == "alpha")
      o.alpha = text::parse_double(value, "merge spec '" + original + "': alpha");
    else
      throw fail("unknown key '" + std::string(key) + "' (expected floor=, alpha=, allow-non-monotone)");
  }
  return o;
}
}  // namespace

MergeSpec parse_merge_spec(std::string_view text_form) {
  const std::string original(text_form);
  const auto fail = [&](const std::string& why) -> Error {
    return Error("merge spec '" + original + "': " + why);
  };
  std::string normalised(text::trim(text_form));
  if (normalised.empty()) throw fail("empty (expected a shape: " + shape_list() + ", or weights=/decay=)");
  // "ema:alpha=0.2" and "ema,alpha=0.2" are the same spec; a table's first value follows '='.
  if (auto colon = normalised.find(':'); colon != std::string::npos) normalised[colon] = ',';
  const auto tokens = text::split(normalised, ',');
  const std::string_view head = text::trim(tokens[0]);
  const std::span<const std::string_view> rest(tokens.data() + 1, tokens.size() - 1);

  MergeSpec spec;
  if (head.starts_with("weights=") || head.starts_with("decay=")) {
    TableRule table;
    table.kind = head.starts_with("decay=") ? TableRule::Kind::decay : TableRule::Kind::merge_weights;
    const auto first = head.substr(head.find('=') + 1);
    if (!text::trim(first).empty()) table.values.push_back(text::parse_double(first, "merge spec '" + original + "'"));
    else if (!rest.empty() && text::is_number(rest[0])) throw fail("empty first table value");
    const SpecOptions o = parse_spec_options(rest, &table.values, original);
    if (o.floor) throw fail("floor does not apply to a table");
    if (o.alpha) throw fail("alpha does not apply to a table");
    table.allow_non_monotone = o.allow_non_monotone;
    spec = std::move(table);
  } else {
    const auto shape = parse_decay_shape(head);
    if (!shape && !ambiguous_shape_hint(head).empty()) throw fail(ambiguous_shape_hint(head));
    if (!shape) throw fail("unknown shape '" + std::string(head) + "' (expected " + shape_list() + ", weights=, decay=)");
    const SpecOptions o = parse_spec_options(rest, nullptr, original);
    if (o.allow_non_monotone) throw fail("allow-non-monotone applies to weights=/decay= tables only");
    if (o.alpha && *shape != DecayShape::exponential) throw fail("alpha applies to ema only");
    if (o.alpha && !(*o.alpha > 0.0 && *o.alpha <= 1.0)) throw fail("alpha must be in (0, 1]");
    if (o.alpha)
      spec = EmaRule{*o.alpha, o.floor.value_or(0.0)};
    else
      spec = ShapeRule{*shape, o.floor.value_or(0.0)};
  }
  try {
    validate(spec);
  } catch (const Error& e) {
    throw fail(e.what());
  }
  return spec;
}

std::vector<MergeSpec> parse_merge_spec_list(std::string_view list) {
  std::vector<std::string> groups;
  bool in_table = false;
  const std::string owned(list);  // split() returns views into it
  for (const auto& raw : text::split(owned, ',')) {
    const std::string tok(text::trim(raw));
    if (tok.empty()) continue;
    const bool option = !groups.empty() && (tok.starts_with("floor=") || tok.starts_with("alpha=") ||
                                            tok == "allow-non-monotone" || tok == "allow_non_monotone" ||
                                            (in_table && text::is_number(tok)));
    if (option) {
      groups.back() += "," + tok;
      in_table = in_table && text::is_number(tok);
      continue;
    }
    groups.push_back(tok);
    in_table = tok.starts_with("weights=") || tok.starts_with("decay=");
  }
  std::vector<MergeSpec> specs;
  for (const auto& g : groups) specs.push_back(parse_merge_spec(g));
  return specs;
}

std::vector<double> merge_weights(const MergeSpec& spec, int count) {
  if (count < 1) throw Error("merge weights need at least one checkpoint, got count " + std::to_string(count));
  validate(spec);
  if (spec.per_checkpoint()) return per_checkpoint_weights(spec, count);
  const ShapeRule& s = *spec.shape();
  const int k = count - 1;
  std::vector<double> w(static_cast<std::size_t>(k));
  for (int i = 1; i <= k; ++i)
    w[static_cast<std::size_t>(i - 1)] = decay_value(s.shape, static_cast<double>(i) / (k + 1), s.floor);
  return decay_to_merge_weights(w);
}

std::string sampling_rule(const MergeSpec& spec, bool over_window) {
  if (spec.table()) return "user table";
  if (spec.per_checkpoint()) return "per checkpoint";
  return std::string(over_window ? kWindowSamplingRule : kSamplingRule);
}

bool window_covered(std::span<const std::int64_t> positions, std::int64_t window) {
  if (positions.empty() || window <= 0) return false;
  const std::int64_t newest = positions.back();
  if (newest < std::numeric_limits<std::int64_t>::min() + window) return true;  // reaches back past any step
  const std::int64_t start = newest - window;
  if (positions.front() <= start) return true;
  if (positions.size() < 2) return false;
  // The next older checkpoint, one gap before the oldest, would lie outside. Both differences are
  // below window here (start < positions[0] < positions[1] <= newest), so neither overflows.
  return positions[1] - positions[0] >= positions[0] - start;
}

WindowSelection select_window(const MergeSpec& spec, std::span<const std::int64_t> positions,
                              std::int64_t window) {
  if (window <= 0) throw Error("merge window must be positive, got " + std::to_string(window));
  if (positions.empty()) throw Error("merge window: no checkpoint positions to select from");
  for (std::size_t i = 1; i < positions.size(); ++i)
    if (positions[i] <= positions[i - 1])
      throw Error("merge window: checkpoint positions are not strictly ascending (" +
                  std::to_string(positions[i - 1]) + " then " + std::to_string(positions[i]) + ")");
  validate(spec);
  const std::int64_t newest = positions.back();
  // The window is (newest - window, newest]; guard the subtraction against overflow.
  const bool everything = newest < std::numeric_limits<std::int64_t>::min() + window;
  const std::int64_t lo = everything ? std::numeric_limits<std::int64_t>::min() : newest - window;
  const auto first = everything ? positions.begin() : std::upper_bound(positions.begin(), positions.end(), lo);

  WindowSelection sel;
  for (auto it = first; it != positions.end(); ++it)
    sel.indices.push_back(static_cast<std::size_t>(it - positions.begin()));
  const int count = static_cast<int>(sel.indices.size());

  if (spec.per_checkpoint()) {
    sel.weights = merge_weights(spec, count);
  } else {
    const ShapeRule& s = *spec.shape();
    // Sample the shape at each checkpoint's place in the window: t_i = (p_i - p_0) / window.
    const double p0 = static_cast<double>(positions[sel.indices.front()]);
    std::vector<double> w;
    for (std::size_t i = 1; i < sel.indices.size(); ++i) {
      const double t = (static_cast<double>(positions[sel.indices[i]]) - p0) / static_cast<double>(window);
      w.push_back(decay_value(s.shape, t, s.floor));
    }
    sel.weights = decay_to_merge_weights(w);
  }
  sel.decay = merge_weights_to_decay(sel.weights);
  return sel;
}

}  // namespace wsm
