#pragma once
// A small line-plot module on cairo for the `wsm` tools (schedule curves, merge comparisons):
// several named series, axes with ticks, axis labels, a title and a legend. The file format follows
// the extension (.svg or .png); the file is written atomically.
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wsm::tools {

struct Series {
  std::string name;        // legend entry
  std::vector<double> xs;  // same length as ys; non-finite points are skipped
  std::vector<double> ys;
  bool steps = false;      // draw as a staircase (value holds until the next x)
};

struct PlotOptions {
  int width = 960;   // pixels (PNG) or points (SVG)
  int height = 560;
};

// Throws wsm::Error on an unknown extension, mismatched xs/ys, or when cairo cannot write the file.
void plot_lines(const std::filesystem::path& path, std::string_view title, std::string_view xlabel,
                std::string_view ylabel, std::span<const Series> series, const PlotOptions& options = {});

// Tick positions covering [lo, hi] at a 1/2/5 x 10^n spacing, about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace wsm::tools
