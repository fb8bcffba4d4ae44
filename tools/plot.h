#pragma once
// A small line-plot module on cairo for the `wsm` tools (schedule curves, merge comparisons):
// several named series (lines, staircases, points, error bars), axes with ticks, axis labels, a
// title and a legend placed where it covers the fewest points. The file format follows
// the extension (.svg or .png); the file is written atomically.
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsm::tools {

enum class Mark { line, staircase, points, line_points };  // staircase: a value holds until the next x

struct Series {
  std::string name;        // legend entry
  std::vector<double> xs;  // same length as ys; non-finite points are skipped
  std::vector<double> ys;
  Mark mark = Mark::line;
  std::vector<double> yerr;  // optional, same length as ys: error bars of +-yerr
  int colour = -1;           // palette index; -1: the series' position
};

struct PlotOptions {
  int width = 960;   // pixels (PNG) or points (SVG)
  int height = 560;
  // Categorical x axis: labels at these x positions replace the numeric ticks.
  std::vector<std::pair<double, std::string>> xlabels;
};

// Throws wsm::Error on an unknown extension, mismatched xs/ys, or when cairo cannot write the file.
void plot_lines(const std::filesystem::path& path, std::string_view title, std::string_view xlabel,
                std::string_view ylabel, std::span<const Series> series, const PlotOptions& options = {});

// Palette indices that mean the same thing in every picture wsm draws (`wsm compare`, `wsm
// report`): one colour per decay shape, whatever else a picture holds or in which order.
inline constexpr int kRawColour = 6;  // raw checkpoints, the constant-LR trunk (grey)
// The colour of a decay shape, or of a name that starts with one ("1-sqrt", "1-sqrt_w800",
// "cosine floor 0.1"); EMAs share exponential's. Other names (weight tables) get a colour of their own
// text, never grey nor a baseline's.
int shape_colour(std::string_view shape_or_label);
// The k-th baseline's colour (`wsm compare sweep --baseline`): never a shape's.
int baseline_colour(std::size_t k);

// Tick positions covering [lo, hi] at a 1/2/5 x 10^n spacing, about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace wsm::tools
