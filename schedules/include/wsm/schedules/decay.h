#pragma once
// The WSM duality (docs/method-guide.md): a decay w_1..w_k over a window of k+1 checkpoints is the
// same thing as merge weights c_0..c_k (oldest first) with w_i = sum_{j>=i} c_j.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace wsm {

enum class DecayShape { linear, cosine, one_minus_sqrt, inverse_sqrt, exponential, wma };

std::string_view decay_shape_name(DecayShape s);           // "linear", "cosine", "1-sqrt", ...
std::optional<DecayShape> parse_decay_shape(std::string_view name);
// For a name parse_decay_shape refuses because it is ambiguous ("sqrt": 1-sqrt or inverse-sqrt?),
// the sentence that says which names to write instead; empty for any other name.
std::string ambiguous_shape_hint(std::string_view name);

// f(t) for t in [0,1] with the floor applied as docs/schedules.md says (w = r + (1-r) f(t);
// inverse-sqrt uses the floor as its own end value, default 0.1 when floor is 0).
double decay_value(DecayShape s, double t, double floor = 0.0);

// c_0..c_k from w_1..w_k. Throws wsm::Error on a decay that is not non-increasing within [0,1]
// unless allow_non_monotone (then weights may be negative; they still sum to 1).
std::vector<double> decay_to_merge_weights(std::span<const double> w, bool allow_non_monotone = false);
// w_1..w_k from c_0..c_k (tail sums).
std::vector<double> merge_weights_to_decay(std::span<const double> c);

// How a merge weighs its checkpoints: one of three rules.
//
// A decay shape f sampled over the window (docs/method-guide.md), with a floor r keeping a fraction r
// of every update: w = r + (1-r) f(t). "exponential" is the paper's f(t) = 1 - 0.1^(1-t); "wma" is
// defined on checkpoint indices (c_j ~ j+1).
struct ShapeRule {
  DecayShape shape = DecayShape::linear;
  double floor = 0.0;
  bool operator==(const ShapeRule&) const = default;
};
// PMA's EMA, defined on checkpoint indices: c_0 = (1-alpha)^k, c_j = alpha (1-alpha)^(k-j), j >= 1.
struct EmaRule {
  double alpha = 0.2;  // in (0, 1]
  double floor = 0.0;
  bool operator==(const EmaRule&) const = default;
};
// A user table: merge weights c_0..c_k (normalised to sum 1) or a decay w_1..w_k.
struct TableRule {
  enum class Kind { merge_weights, decay };
  Kind kind = Kind::merge_weights;
  std::vector<double> values;
  bool allow_non_monotone = false;  // accept negative weights (an increasing or out-of-range decay)
  bool operator==(const TableRule&) const = default;
};

// What every merged output records: the rule its weights came from.
struct MergeSpec {
  std::variant<ShapeRule, EmaRule, TableRule> rule;

  MergeSpec() = default;
  MergeSpec(ShapeRule r) : rule(r) {}  // NOLINT(google-explicit-constructor): a rule is a spec
  MergeSpec(EmaRule r) : rule(r) {}    // NOLINT(google-explicit-constructor)
  MergeSpec(TableRule r) : rule(std::move(r)) {}  // NOLINT(google-explicit-constructor)

  const ShapeRule* shape() const { return std::get_if<ShapeRule>(&rule); }
  const EmaRule* ema() const { return std::get_if<EmaRule>(&rule); }
  const TableRule* table() const { return std::get_if<TableRule>(&rule); }
  double floor() const;               // the shape's or EMA's floor; 0 for a table
  void set_floor(double floor);       // on a shape or EMA; throws wsm::Error for a table
  // True when weights follow checkpoint indices (wma, EMA, tables) rather than positions in the window.
  bool per_checkpoint() const;
  std::string kind_name() const;      // "linear", ..., "ema", "weights" or "decay"
  std::string to_string() const;      // e.g. "1-sqrt", "cosine,floor=0.1", "ema:alpha=0.2", "weights=0.1,0.2"
  bool operator==(const MergeSpec&) const = default;
};

// Parses what MergeSpec::to_string prints (parse_merge_spec(s.to_string()) == s), e.g. "1-sqrt",
// "cosine,floor=0.1", "ema", "ema:alpha=0.2", "wma", "weights=0.1,0.2,0.7", "decay=1,0.5,0.25",
// "decay=1,0.2,0.5,allow-non-monotone". Throws wsm::Error naming the bad part.
MergeSpec parse_merge_spec(std::string_view text);

// A comma-separated list of specs, as `--shape` takes it: "linear,cosine,floor=0.1,ema:alpha=0.2,
// weights=0.2,0.8". A token continues the spec before it when it is one of that spec's options
// (floor=, alpha=, allow-non-monotone) or a number after weights=/decay=; anything else starts a
// new spec. Throws wsm::Error naming the bad spec.
std::vector<MergeSpec> parse_merge_spec_list(std::string_view text);

// Merge weights for `count` = k+1 evenly spaced checkpoints, oldest first. The sampling rule is
// docs/method-guide.md's (the paper's and Megatron's): w_i = f(i / (k+1)), i = 1..k.
std::vector<double> merge_weights(const MergeSpec& spec, int count);
inline constexpr std::string_view kSamplingRule = "w_i=f(i/(k+1))";
inline constexpr std::string_view kWindowSamplingRule = "w_i=f((p_i-p_0)/window)";  // select_window's

// How a spec's weights were sampled, as every output's provenance and `wsm weights` say it, once:
// "user table" (weights= / decay=), "per checkpoint" (wma, ema:alpha=), or a shape's rule:
// kWindowSamplingRule over a window of steps or tokens (select_window), kSamplingRule without one.
std::string sampling_rule(const MergeSpec& spec, bool over_window);

// Picks the checkpoints inside a window and their weights, for positions (steps or tokens, strictly
// ascending) that may be unevenly spaced. The window is (newest - window, newest]; a shape is
// sampled at each selected checkpoint's position, w_i = f((p_i - p_0) / window), which is
// f(i/(k+1)) for even spacing with window = (k+1) * interval. WMA, PMA's EMA (alpha) and tables are
// defined per checkpoint and use merge_weights(spec, selected count). Throws wsm::Error on
// window <= 0, empty or non-ascending positions. Whether the window holds enough checkpoints is
// the caller's concern (one checkpoint selected gives weights {1}). See docs/schedules.md.
struct WindowSelection {
  std::vector<std::size_t> indices;  // into positions, oldest first
  std::vector<double> weights;       // c_j for each selected checkpoint, sums to 1
  std::vector<double> decay;         // the equivalent w_i
};
WindowSelection select_window(const MergeSpec& spec, std::span<const std::int64_t> positions,
                              std::int64_t window);

// Whether the checkpoints reach back to the window's start (docs/schedules.md, "Windows and the
// history"): a checkpoint lies at or before newest - window, or the oldest one lies within one
// checkpoint interval (its gap to the next) after that start, so no checkpoint of the window is
// missing. `wsm merge` warns when it is not, since the shape is then sampled over a span the
// checkpoints do not reach (linear over 3 checkpoints 100 steps apart in a window of 400 gives
// 0.25/0.25/0.5, not thirds). positions: strictly ascending.
bool window_covered(std::span<const std::int64_t> positions, std::int64_t window);

}  // namespace wsm
