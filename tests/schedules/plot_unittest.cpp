// tools/plot: tick placement, argument checks, and that a PNG really shows the series (its pixels
// are read back with cairo and searched for each series' colour).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>

#include "wsm/core/error.h"
#include "tools/plot.h"

namespace wsm::tools {
namespace {

namespace fs = std::filesystem;

class Plot : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("wsm_plot_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

TEST(NiceTicks, CoverTheRangeAtOneTwoFiveSpacing) {
  for (auto [lo, hi] : std::vector<std::pair<double, double>>{{0, 20000}, {0, 3e-4}, {-1.5, 7.2}, {0.001, 0.0013}, {5, 5.5}}) {
    const auto t = nice_ticks(lo, hi);
    ASSERT_GE(t.size(), 3u) << lo << " " << hi;
    ASSERT_LE(t.size(), 12u);
    const double step = t[1] - t[0];
    const double mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
    EXPECT_TRUE(std::abs(mantissa - 1) < 1e-6 || std::abs(mantissa - 2) < 1e-6 || std::abs(mantissa - 5) < 1e-6)
        << step;
    for (std::size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], step, step * 1e-9);
    EXPECT_GE(t.front(), lo - step * 1e-9);
    EXPECT_LT(t.front() - lo, step);  // the first tick is within one step of the start
    EXPECT_LE(t.back(), hi + step * 1e-9);
    EXPECT_LT(hi - t.back(), step);
  }
}

TEST_F(Plot, RejectsBadArguments) {
  std::vector<Series> s = {{"a", {0, 1, 2}, {1, 2}}};
  EXPECT_THROW(plot_lines(dir_ / "x.png", "t", "x", "y", s), Error);  // mismatched sizes
  s[0].ys.push_back(3);
  EXPECT_THROW(plot_lines(dir_ / "x.bmp", "t", "x", "y", s), Error);  // unknown format
  EXPECT_THROW(plot_lines(dir_ / "missing" / "x.png", "t", "x", "y", s), Error);  // no such directory
  EXPECT_TRUE(fs::is_empty(dir_));  // nothing half-written left behind
}

TEST_F(Plot, PngShowsEverySeries) {
  std::vector<Series> s(2);
  s[0].name = "rising";
  s[1].name = "falling";
  for (int i = 0; i <= 100; ++i) {
    s[0].xs.push_back(i), s[0].ys.push_back(i * 0.01);
    s[1].xs.push_back(i), s[1].ys.push_back(1 - i * 0.01);
  }
  s[1].mark = Mark::staircase;
  const fs::path png = dir_ / "two.PNG";  // the extension is case-insensitive
  plot_lines(png, "two series", "step", "value", s);
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> img(
      cairo_image_surface_create_from_png(png.c_str()), cairo_surface_destroy);
  ASSERT_EQ(cairo_surface_status(img.get()), CAIRO_STATUS_SUCCESS);
  EXPECT_EQ(cairo_image_surface_get_width(img.get()), PlotOptions{}.width);
  // Count pixels near the first two palette colours (0,114,178) and (213,94,0).
  const int w = cairo_image_surface_get_width(img.get()), h = cairo_image_surface_get_height(img.get());
  const int stride = cairo_image_surface_get_stride(img.get());
  const unsigned char* data = cairo_image_surface_get_data(img.get());
  int blue = 0, orange = 0, white = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const unsigned char* p = data + y * stride + 4 * x;  // BGRA in memory (little-endian ARGB32)
      const int b = p[0], g = p[1], r = p[2];
      if (std::abs(r - 0) < 20 && std::abs(g - 115) < 20 && std::abs(b - 178) < 20) ++blue;
      if (std::abs(r - 214) < 20 && std::abs(g - 94) < 20 && std::abs(b - 0) < 20) ++orange;
      if (r == 255 && g == 255 && b == 255) ++white;
    }
  EXPECT_GT(blue, 500);    // a diagonal across the plot, 2 px wide
  EXPECT_GT(orange, 500);
  EXPECT_GT(white, w * h / 2);  // mostly background: not a blank or black image
}

// A schedule's lines reach every inside corner (warmup ramp bottom-left, peak along the top, a decay
// ending bottom-right): the legend must then sit in a band above the data, not over a line. A line
// under the legend's translucent box shows as a faint tint with no full-colour pixel near it; that
// is what is counted (anti-aliased line edges are faint too, but always next to full colour).
TEST_F(Plot, LegendHidesNoLineWhenEveryCornerIsUsed) {
  std::vector<Series> s(2);
  s[0].name = "warmup=500,stable,peak=0.0003 (the schedule)";
  s[1].name = "WSM merge 1-sqrt over 1000 steps (8 ckpts)";
  s[1].mark = Mark::staircase;
  for (int step = 0; step < 5000; step += 2) {
    const double lr = 3e-4 * std::min(1.0, (step + 1) / 500.0);
    const double t = std::clamp((step - 4000) / 1000.0, 0.0, 1.0);
    s[0].xs.push_back(step), s[0].ys.push_back(lr);
    s[1].xs.push_back(step), s[1].ys.push_back(lr * (1 - std::sqrt(std::ceil(t * 8) / 9.0)));
  }
  const fs::path png = dir_ / "schedule.png";
  plot_lines(png, "schedule", "step", "learning rate", s);
  std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)> img(
      cairo_image_surface_create_from_png(png.c_str()), cairo_surface_destroy);
  ASSERT_EQ(cairo_surface_status(img.get()), CAIRO_STATUS_SUCCESS);
  const int w = cairo_image_surface_get_width(img.get()), h = cairo_image_surface_get_height(img.get());
  const int stride = cairo_image_surface_get_stride(img.get());
  const unsigned char* data = cairo_image_surface_get_data(img.get());
  const auto spread = [&](int x, int y) {  // max - min channel: 0 for white, greys and black text
    const unsigned char* p = data + y * stride + 4 * x;
    return std::max({p[0], p[1], p[2]}) - std::min({p[0], p[1], p[2]});
  };
  const auto light = [&](int x, int y) {
    const unsigned char* p = data + y * stride + 4 * x;
    return std::min({p[0], p[1], p[2]}) > 190;
  };
  int hidden = 0, strong = 0;
  for (int y = 2; y < h - 2; ++y)
    for (int x = 2; x < w - 2; ++x) {
      strong += spread(x, y) > 80;
      if (!(light(x, y) && spread(x, y) >= 6 && spread(x, y) <= 60)) continue;
      bool near_colour = false;
      for (int dy = -2; dy <= 2 && !near_colour; ++dy)
        for (int dx = -2; dx <= 2 && !near_colour; ++dx) near_colour = spread(x + dx, y + dy) > 80;
      hidden += !near_colour;
    }
  EXPECT_GT(strong, 2000);  // the lines are drawn
  EXPECT_LT(hidden, 10) << "pixels of a line under the legend box";
}

TEST_F(Plot, SvgAndEmptyOrFlatData) {
  const std::vector<Series> flat = {{"flat", {0, 1, 2}, {3e-4, 3e-4, 3e-4}}, {"none", {}, {}}};
  plot_lines(dir_ / "flat.svg", "flat", "x", "y", flat);
  ASSERT_TRUE(fs::exists(dir_ / "flat.svg"));
  EXPECT_GT(fs::file_size(dir_ / "flat.svg"), 1000u);
  plot_lines(dir_ / "empty.svg", "empty", "x", "y", {});
  EXPECT_TRUE(fs::exists(dir_ / "empty.svg"));
}

}  // namespace
}  // namespace wsm::tools
