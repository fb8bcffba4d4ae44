#include "tools/plot.h"

#include <cairo-svg.h>
#include <cairo.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numbers>

#include "wsm/formats/atomic_file.h"
#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"

namespace wsm::tools {
namespace {

using SurfacePtr = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using ContextPtr = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

struct Rgb {
  double r, g, b;
};
// Colour-blind-safe palette (Okabe-Ito), cycled.
// Indices 0-5 are the decay shapes (shape_colour), 6 grey the raw checkpoints, 7-8 baselines.
constexpr Rgb kPalette[] = {{0.00, 0.45, 0.70}, {0.84, 0.37, 0.00}, {0.00, 0.62, 0.45}, {0.80, 0.47, 0.65},
                            {0.90, 0.62, 0.00}, {0.34, 0.71, 0.91}, {0.35, 0.35, 0.35}, {0.00, 0.00, 0.00},
                            {0.55, 0.10, 0.20}};
constexpr int kShapeColours = 6;
constexpr int kFirstBaselineColour = 7;

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  void settle() {  // empty or flat data still gets a readable axis
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo <= std::abs(hi) * 1e-12) {
      const double pad = lo == 0 ? 1 : std::abs(lo) * 0.1;
      lo -= pad;
      hi += pad;
    }
  }
};

// Labels of one axis share a format, chosen from the largest |tick| (`mag`) and the spacing.
std::string tick_label(double v, double step, double mag) {
  if (std::abs(v) < step * 1e-9) return "0";
  mag = std::max(mag, step);
  if (mag >= 1e6 || mag < 1e-3) {
    // Scientific with as many digits as the spacing needs.
    const int digits = std::max(0, static_cast<int>(std::floor(std::log10(mag))) -
                                       static_cast<int>(std::floor(std::log10(step) + 1e-9)));
    return fmt::format("{:.{}e}", v, std::min(digits, 6));
  }
  const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  return fmt::format("{:.{}f}", v, decimals);
}

void text_at(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay) {
  // (ax, ay) anchor: 0 = left/top, 0.5 = centre, 1 = right/bottom of the text's box.
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_move_to(cr, x - e.x_bearing - ax * e.width, y - e.y_bearing - ay * e.height);
  cairo_show_text(cr, s.c_str());
}

double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

Rgb colour_of(const Series& s, std::size_t k) {
  return kPalette[(s.colour >= 0 ? std::size_t(s.colour) : k) % std::size(kPalette)];
}

struct Frame {
  double left, top, right, bottom;
};

// Axis ranges, ticks and the plot frame, and the data-to-pixel mapping they define.
struct Axes {
  Range xr, yr;
  std::vector<double> xt, yt;  // tick positions
  double xstep = 1, ystep = 1;  // tick spacing
  double xmag = 0, ymag = 0;    // largest |tick|: the labels' format
  Frame f{};
  double px(double x) const { return f.left + (x - xr.lo) / (xr.hi - xr.lo) * (f.right - f.left); }
  double py(double y) const { return f.bottom - (y - yr.lo) / (yr.hi - yr.lo) * (f.bottom - f.top); }
};

bool has_dots(const Series& s) { return s.mark == Mark::points || s.mark == Mark::line_points; }

struct Box {
  double w, h;
};

// The legend's size: the widest name in the 12-point face, one row per series.
Box legend_box(cairo_t* cr, std::span<const Series> series) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  double w = 0;
  for (const auto& s : series) w = std::max(w, text_width(cr, s.name));
  return {w + 44, 18 * double(series.size()) + 8};
}

// How much of the drawing a legend at (bx, by) would hide: the points inside it, and every line
// that crosses it (sampled every 3 px along each drawn segment, so a steep ramp or a staircase's
// riser counts even when no data point falls inside).
std::size_t legend_cover(std::span<const Series> series, double bx, double by, Box b, const Axes& a) {
  const auto inside = [&](double x, double y) {
    return x >= bx - 4 && x <= bx + b.w + 4 && y >= by - 4 && y <= by + b.h + 4;
  };
  const auto segment = [&](double x0, double y0, double x1, double y1) {
    const int n = std::clamp(int(std::hypot(x1 - x0, y1 - y0) / 3), 1, 4000);
    std::size_t hits = 0;
    for (int k = 1; k <= n; ++k) hits += inside(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n);
    return hits;
  };
  std::size_t covered = 0;
  for (const auto& s : series) {
    double lx = 0, ly = 0;
    bool have_last = false;
    for (std::size_t i = 0; i < s.xs.size(); ++i) {
      if (!std::isfinite(s.xs[i]) || !std::isfinite(s.ys[i])) {
        have_last = false;
        continue;
      }
      const double x = a.px(s.xs[i]), y = a.py(s.ys[i]);
      covered += inside(x, y);
      if (have_last && s.mark == Mark::staircase) covered += segment(lx, ly, x, ly) + segment(x, ly, x, y);
      else if (have_last && s.mark != Mark::points) covered += segment(lx, ly, x, y);
      lx = x, ly = y, have_last = true;
    }
  }
  return covered;
}

// The data's x and y ranges (error bars and category positions included), padded to read well.
void data_ranges(const PlotOptions& o, std::span<const Series> series, Range& xr, Range& yr) {
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.xs.size(); ++i) {
      if (!std::isfinite(s.xs[i]) || !std::isfinite(s.ys[i])) continue;
      xr.add(s.xs[i]), yr.add(s.ys[i]);
      if (!s.yerr.empty()) yr.add(s.ys[i] - s.yerr[i]), yr.add(s.ys[i] + s.yerr[i]);
    }
  for (const auto& [x, label] : o.xlabels) xr.add(x);
  if (!o.xlabels.empty()) {  // categories sit inside the frame, not on it
    const double pad = o.xlabels.size() > 1 ? 0.5 * (xr.hi - xr.lo) / double(o.xlabels.size() - 1) : 0.5;
    xr.lo -= pad, xr.hi += pad;
  }
  xr.settle();
  yr.settle();
  const bool dots = std::any_of(series.begin(), series.end(), has_dots);
  if (dots && o.xlabels.empty()) {  // points on the first or last x stay clear of the frame
    const double pad = 0.02 * (xr.hi - xr.lo);
    xr.lo -= pad, xr.hi += pad;
  }
  const double ypad = 0.04 * (yr.hi - yr.lo);
  if (yr.lo > 0 && yr.lo < 0.5 * yr.hi) yr.lo = 0;  // non-negative quantities (LRs) read best from 0
  else if (dots) yr.lo -= ypad;
  yr.hi += ypad;                                      // keep the top line off the frame
}

// The y range to add on top so the legend fits in a band above the data, when every inside corner
// of the frame would hide part of a line; 0 when a corner is free. Judged on a provisional frame
// (the real one depends on the tick labels, which depend on the range).
double legend_headroom(cairo_t* cr, const PlotOptions& o, std::span<const Series> series, const Range& xr,
                       const Range& yr) {
  if (series.empty()) return 0;
  const Box b = legend_box(cr, series);
  Axes provisional;
  provisional.xr = xr, provisional.yr = yr;
  provisional.f = {90, 48, o.width - 24.0, o.height - 58.0};
  const Frame& f = provisional.f;
  for (const double bx : {f.right - b.w - 8, f.left + 8})
    for (const double by : {f.top + 8, f.bottom - b.h - 8})
      if (legend_cover(series, bx, by, b, provisional) == 0) return 0;
  const double height = f.bottom - f.top, band = b.h + 20;
  if (band >= 0.6 * height) return 0;  // a legend this tall would squeeze the data: let it overlap
  return (yr.hi - yr.lo) * band / (height - band);
}

// Ranges, ticks, and the frame left of which the widest y tick label fits (measured in the
// 12-point face the ticks are drawn in, which stays selected).
Axes layout_axes(cairo_t* cr, const PlotOptions& o, std::span<const Series> series) {
  Axes a;
  data_ranges(o, series, a.xr, a.yr);
  a.yr.hi += legend_headroom(cr, o, series, a.xr, a.yr);
  a.xt = nice_ticks(a.xr.lo, a.xr.hi);
  a.yt = nice_ticks(a.yr.lo, a.yr.hi);
  a.xstep = a.xt.size() > 1 ? a.xt[1] - a.xt[0] : 1, a.ystep = a.yt.size() > 1 ? a.yt[1] - a.yt[0] : 1;
  a.xmag = std::max(std::abs(a.xt.front()), std::abs(a.xt.back()));
  a.ymag = std::max(std::abs(a.yt.front()), std::abs(a.yt.back()));

  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);
  double ylabel_w = 0;
  for (double v : a.yt) ylabel_w = std::max(ylabel_w, text_width(cr, tick_label(v, a.ystep, a.ymag)));
  a.f = {40 + ylabel_w, 48, o.width - 24.0, o.height - 58.0};
  return a;
}

// Grid lines, tick marks and tick labels (or the category labels on x), then the frame.
void draw_grid(cairo_t* cr, const PlotOptions& o, const Axes& a) {
  const Frame& f = a.f;
  cairo_set_line_width(cr, 1);
  for (const auto& [v, label] : o.xlabels) {
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    text_at(cr, label, a.px(v), f.bottom + 8, 0.5, 0);
  }
  for (double v : o.xlabels.empty() ? a.xt : std::vector<double>{}) {
    if (v < a.xr.lo - 1e-9 * a.xstep || v > a.xr.hi + 1e-9 * a.xstep) continue;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, a.px(v), f.top);
    cairo_line_to(cr, a.px(v), f.bottom);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    cairo_move_to(cr, a.px(v), f.bottom);
    cairo_line_to(cr, a.px(v), f.bottom + 5);
    cairo_stroke(cr);
    text_at(cr, tick_label(v, a.xstep, a.xmag), a.px(v), f.bottom + 8, 0.5, 0);
  }
  for (double v : a.yt) {
    if (v < a.yr.lo - 1e-9 * a.ystep || v > a.yr.hi + 1e-9 * a.ystep) continue;
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, f.left, a.py(v));
    cairo_line_to(cr, f.right, a.py(v));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    cairo_move_to(cr, f.left - 5, a.py(v));
    cairo_line_to(cr, f.left, a.py(v));
    cairo_stroke(cr);
    text_at(cr, tick_label(v, a.ystep, a.ymag), f.left - 8, a.py(v), 1, 0.5);
  }
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
  cairo_rectangle(cr, f.left, f.top, f.right - f.left, f.bottom - f.top);
  cairo_stroke(cr);
}

// Axis labels (y rotated) and the bold title.
void draw_titles(cairo_t* cr, const PlotOptions& o, const Frame& f, std::string_view title, std::string_view xlabel,
                 std::string_view ylabel) {
  cairo_set_font_size(cr, 13);
  text_at(cr, std::string(xlabel), (f.left + f.right) / 2, o.height - 8.0, 0.5, 1);
  cairo_save(cr);
  cairo_translate(cr, 14, (f.top + f.bottom) / 2);
  cairo_rotate(cr, -std::numbers::pi / 2);
  text_at(cr, std::string(ylabel), 0, 0, 0.5, 0);
  cairo_restore(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size(cr, 15);
  text_at(cr, std::string(title), (f.left + f.right) / 2, 16, 0.5, 0);
}

// One series: its line (or staircase), then its error bars and dots.
void draw_series(cairo_t* cr, const Series& s, Rgb c, const Axes& a) {
  cairo_set_source_rgb(cr, c.r, c.g, c.b);
  cairo_set_line_width(cr, 2);
  const bool lines = s.mark != Mark::points, dots = has_dots(s);
  bool pen = false;
  double last_y = 0;
  for (std::size_t i = 0; lines && i < s.xs.size(); ++i) {
    if (!std::isfinite(s.xs[i]) || !std::isfinite(s.ys[i])) {
      pen = false;
      continue;
    }
    const double x = a.px(s.xs[i]), y = a.py(s.ys[i]);
    if (!pen) cairo_move_to(cr, x, y);
    else {
      if (s.mark == Mark::staircase) cairo_line_to(cr, x, last_y);
      cairo_line_to(cr, x, y);
    }
    pen = true;
    last_y = y;
  }
  cairo_stroke(cr);
  for (std::size_t i = 0; i < s.xs.size(); ++i) {
    if (!std::isfinite(s.xs[i]) || !std::isfinite(s.ys[i])) continue;
    const double x = a.px(s.xs[i]), y = a.py(s.ys[i]);
    if (!s.yerr.empty() && std::isfinite(s.yerr[i])) {  // whisker with caps
      const double lo = a.py(s.ys[i] - s.yerr[i]), hi = a.py(s.ys[i] + s.yerr[i]);
      cairo_set_line_width(cr, 1.5);
      cairo_move_to(cr, x, lo), cairo_line_to(cr, x, hi);
      cairo_move_to(cr, x - 4, lo), cairo_line_to(cr, x + 4, lo);
      cairo_move_to(cr, x - 4, hi), cairo_line_to(cr, x + 4, hi);
      cairo_stroke(cr);
    }
    if (dots) {
      cairo_arc(cr, x, y, 4, 0, 2 * std::numbers::pi);
      cairo_fill(cr);
    }
  }
}

// Every series, clipped to the plot area.
void draw_all_series(cairo_t* cr, std::span<const Series> series, const Axes& a) {
  const Frame& f = a.f;
  cairo_save(cr);
  cairo_rectangle(cr, f.left, f.top, f.right - f.left, f.bottom - f.top);
  cairo_clip(cr);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (std::size_t k = 0; k < series.size(); ++k) draw_series(cr, series[k], colour_of(series[k], k), a);
  cairo_restore(cr);
}

// The inside corner (top right, top left, bottom right, bottom left) where the legend hides the
// least (legend_cover), first one on ties; returns its top-left. layout_axes leaves a free band
// at the top when every corner would hide something.
std::pair<double, double> legend_corner(std::span<const Series> series, const Axes& a, Box b) {
  const Frame& f = a.f;
  const double corners[4][2] = {{f.right - b.w - 8, f.top + 8},
                                {f.left + 8, f.top + 8},
                                {f.right - b.w - 8, f.bottom - b.h - 8},
                                {f.left + 8, f.bottom - b.h - 8}};
  std::size_t best = 0, best_covered = std::numeric_limits<std::size_t>::max();
  for (std::size_t c = 0; c < 4; ++c) {
    const std::size_t covered = legend_cover(series, corners[c][0], corners[c][1], b, a);
    if (covered < best_covered) best = c, best_covered = covered;
  }
  return {corners[best][0], corners[best][1]};
}

// The legend: a framed box with each series' mark and name, where it covers the fewest points.
void draw_legend(cairo_t* cr, std::span<const Series> series, const Axes& a) {
  if (series.empty()) return;
  const Box b = legend_box(cr, series);
  const double row = 18, box_w = b.w, box_h = b.h;
  const auto [bx, by] = legend_corner(series, a, b);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
  cairo_rectangle(cr, bx, by, box_w, box_h);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  for (std::size_t k = 0; k < series.size(); ++k) {
    const Rgb c = colour_of(series[k], k);
    const double y = by + 4 + row * (double(k) + 0.5);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    cairo_set_line_width(cr, 2);
    if (series[k].mark != Mark::points) {
      cairo_move_to(cr, bx + 6, y);
      cairo_line_to(cr, bx + 30, y);
      cairo_stroke(cr);
    }
    if (has_dots(series[k])) {
      cairo_arc(cr, bx + 18, y, 4, 0, 2 * std::numbers::pi);
      cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text_at(cr, series[k].name, bx + 36, y, 0, 0.5);
  }
}

void draw(cairo_t* cr, const PlotOptions& o, std::string_view title, std::string_view xlabel,
          std::string_view ylabel, std::span<const Series> series) {
  const Axes axes = layout_axes(cr, o, series);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  draw_grid(cr, o, axes);
  draw_titles(cr, o, axes.f, title, xlabel, ylabel);
  draw_all_series(cr, series, axes);
  draw_legend(cr, series, axes);
}

void check(cairo_status_t status, const std::filesystem::path& path) {
  if (status != CAIRO_STATUS_SUCCESS)
    throw Error("plot " + path.string() + ": cairo: " + cairo_status_to_string(status));
}

}  // namespace

int shape_colour(std::string_view name) {
  for (DecayShape shape : {DecayShape::linear, DecayShape::cosine, DecayShape::one_minus_sqrt, DecayShape::inverse_sqrt,
                           DecayShape::exponential, DecayShape::wma})
    if (name.starts_with(decay_shape_name(shape))) return int(shape);
  if (name.starts_with("ema")) return int(DecayShape::exponential);
  return int(std::hash<std::string_view>{}(name) % kShapeColours);
}

int baseline_colour(std::size_t k) {
  return kFirstBaselineColour + int(k % (std::size(kPalette) - std::size_t(kFirstBaselineColour)));
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw * 0.999) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  const double first = std::ceil(lo / step - 1e-9);
  for (double i = first; i * step <= hi + step * 1e-9 && ticks.size() < 100; i += 1) ticks.push_back(i * step);
  return ticks;
}

void plot_lines(const std::filesystem::path& path, std::string_view title, std::string_view xlabel,
                std::string_view ylabel, std::span<const Series> series, const PlotOptions& options) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return std::tolower(ch); });
  if (ext != ".svg" && ext != ".png")
    throw Error("plot " + path.string() + ": unknown format (use a .svg or .png file name)");
  if (options.width < 200 || options.height < 150) throw Error("plot " + path.string() + ": too small");
  for (const auto& s : series)
    if (s.xs.size() != s.ys.size() || (!s.yerr.empty() && s.yerr.size() != s.ys.size()))
      throw Error("plot " + path.string() + ": series '" + s.name + "' has " + std::to_string(s.xs.size()) +
                  " x values, " + std::to_string(s.ys.size()) + " y values and " + std::to_string(s.yerr.size()) +
                  " error bars");

  AtomicFile out(path);
  const std::string temp = out.temp_path().string();
  if (ext == ".svg") {
    SurfacePtr surface(cairo_svg_surface_create(temp.c_str(), options.width, options.height), cairo_surface_destroy);
    check(cairo_surface_status(surface.get()), path);
    {
      ContextPtr cr(cairo_create(surface.get()), cairo_destroy);
      draw(cr.get(), options, title, xlabel, ylabel, series);
      check(cairo_status(cr.get()), path);
    }
    cairo_surface_finish(surface.get());  // writes the SVG document out
    check(cairo_surface_status(surface.get()), path);
  } else {
    SurfacePtr surface(cairo_image_surface_create(CAIRO_FORMAT_ARGB32, options.width, options.height),
                       cairo_surface_destroy);
    check(cairo_surface_status(surface.get()), path);
    {
      ContextPtr cr(cairo_create(surface.get()), cairo_destroy);
      draw(cr.get(), options, title, xlabel, ylabel, series);
      check(cairo_status(cr.get()), path);
    }
    check(cairo_surface_write_to_png(surface.get(), temp.c_str()), path);
  }
  out.commit();
}

}  // namespace wsm::tools

#if defined(__SANITIZE_ADDRESS__)
// Fontconfig (reached through cairo's text API) keeps allocations it never frees; they are not
// ours, so sanitizer builds of every binary that links this module tell LeakSanitizer to skip them.
extern "C" const char* __lsan_default_suppressions() { return "leak:libfontconfig.so\n"; }
#endif
