// LR schedules: values against the formulas written out here, and the text form's round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>

#include "wsm/core/error.h"
#include "wsm/schedules/schedule.h"

namespace wsm {
namespace {

std::string error_of(const char* text) {
  try {
    parse_schedule(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Schedule, WarmupThenStable) {
  const auto s = parse_schedule("warmup=500,stable,peak=3e-4");
  EXPECT_EQ(s.kind, ScheduleKind::stable);
  EXPECT_EQ(s.warmup, 500);
  EXPECT_EQ(s.peak, 3e-4);
  EXPECT_FALSE(s.needs_total());
  for (std::int64_t step : {0, 1, 250, 499}) EXPECT_DOUBLE_EQ(s.lr_at(step), 3e-4 * (step + 1) / 500.0);
  for (std::int64_t step : {500, 501, 10'000, 10'000'000}) EXPECT_DOUBLE_EQ(s.lr_at(step), 3e-4);
  // Warmup is increasing and reaches the peak exactly on its last step.
  for (std::int64_t step = 1; step < 500; ++step) EXPECT_LT(s.lr_at(step - 1), s.lr_at(step));
  EXPECT_DOUBLE_EQ(s.lr_at(499), 3e-4);
}

TEST(Schedule, WsdDecaysOverTheLastStepsWithItsShape) {
  const auto s = parse_schedule("wsd:warmup=100,decay=2000,shape=1-sqrt,floor=0.1,total=10000,peak=1e-3");
  EXPECT_EQ(s.kind, ScheduleKind::wsd);
  EXPECT_EQ(s.decay_shape, DecayShape::one_minus_sqrt);
  EXPECT_DOUBLE_EQ(s.lr_at(5000), 1e-3);
  EXPECT_DOUBLE_EQ(s.lr_at(7999), 1e-3);
  for (std::int64_t step : {8000, 8500, 9000, 9999, 10000}) {
    const double t = (step - 8000) / 2000.0;
    EXPECT_NEAR(s.lr_at(step), 1e-3 * (0.1 + 0.9 * (1 - std::sqrt(t))), 1e-18) << step;
  }
  EXPECT_NEAR(s.lr_at(20000), 1e-4, 1e-18);  // past the end: stays at the floor
  const auto c = parse_schedule("wsd:decay=100,shape=cosine,total=1000,peak=1");
  EXPECT_NEAR(c.lr_at(950), (1 + std::cos(std::numbers::pi * 0.5)) / 2, 1e-15);
}

TEST(Schedule, WsdWithoutTotalTakesTheRunLength) {
  const auto s = parse_schedule("wsd:warmup=500,decay=2000,shape=1-sqrt,floor=0");
  EXPECT_TRUE(s.needs_total());
  EXPECT_THROW(s.lr_at(10), Error);
  const auto r = s.with_total(20000);
  EXPECT_EQ(r.total, 20000);
  EXPECT_DOUBLE_EQ(r.lr_at(17999), r.peak);
  EXPECT_NEAR(r.lr_at(20000), 0.0, 1e-18);
  EXPECT_THROW(s.with_total(1000), Error);  // warmup + decay > total
}

TEST(Schedule, CosineLinearInverseSqrt) {
  const auto c = parse_schedule("cosine:warmup=10,total=110,floor=0.1,peak=2");
  for (std::int64_t step : {10, 35, 60, 109, 110}) {
    const double t = (step - 10) / 100.0;
    EXPECT_NEAR(c.lr_at(step), 2 * (0.1 + 0.9 * (1 + std::cos(std::numbers::pi * t)) / 2), 1e-14);
  }
  const auto l = parse_schedule("linear:total=100,peak=1");
  for (std::int64_t step : {0, 25, 99, 100, 150}) EXPECT_NEAR(l.lr_at(step), std::max(0.0, 1 - step / 100.0), 1e-15);
  const auto i = parse_schedule("inverse-sqrt:warmup=100,peak=1");
  for (std::int64_t step : {99, 100, 399, 9999}) EXPECT_NEAR(i.lr_at(step), std::sqrt(100.0 / (step + 1)), 1e-15);
  const auto f = parse_schedule("inverse-sqrt:warmup=100,floor=0.2,peak=1");
  EXPECT_NEAR(f.lr_at(1'000'000), 0.2, 1e-15);
}

TEST(Schedule, TextFormRoundTrips) {
  for (const char* text : {"warmup=500,stable,peak=0.0003", "stable,peak=1",
                           "wsd:warmup=500,decay=2000,shape=1-sqrt,total=20000,floor=0.1,peak=0.0003",
                           "wsd:decay=2000,shape=cosine,peak=0.001", "cosine:warmup=500,total=20000,floor=0.1,peak=0.0003",
                           "inverse-sqrt:warmup=500,peak=0.0003", "linear:warmup=500,total=20000,peak=0.0003"}) {
    const auto s = parse_schedule(text);
    EXPECT_EQ(parse_schedule(s.to_string()), s) << text;
    EXPECT_EQ(parse_schedule(s.to_string()).to_string(), s.to_string());
  }
  // The two forms, in whatever order their keys come.
  EXPECT_EQ(parse_schedule("warmup=500,stable,peak=3e-4").to_string(), "warmup=500,stable,peak=0.0003");
  EXPECT_EQ(parse_schedule("peak=3e-4,stable,warmup=500"), parse_schedule("warmup=500,stable,peak=3e-4"));
  Schedule odd;
  odd.kind = ScheduleKind::cosine;
  odd.total = 1000;
  odd.peak = 1.0 / 3.0;
  odd.floor = 0.1 + 0.2;
  EXPECT_EQ(parse_schedule(odd.to_string()), odd);
}

TEST(Schedule, ErrorsNameTheBadPart) {
  EXPECT_NE(error_of("warmup=abc,stable").find("warmup"), std::string::npos);
  EXPECT_NE(error_of("stable,peak=-1").find("peak"), std::string::npos);
  EXPECT_NE(error_of("zigzag:warmup=1").find("zigzag"), std::string::npos);
  EXPECT_NE(error_of("stable,speed=3").find("speed"), std::string::npos);
  EXPECT_NE(error_of("stable,decay=100").find("decay"), std::string::npos);
  EXPECT_NE(error_of("wsd:total=1000").find("decay"), std::string::npos);
  EXPECT_NE(error_of("wsd:decay=100,shape=zig").find("zig"), std::string::npos);
  EXPECT_NE(error_of("cosine:warmup=100,total=50").find("total"), std::string::npos);
  EXPECT_NE(error_of("cosine:floor=1.5,total=10").find("floor"), std::string::npos);
  EXPECT_NE(error_of("stable,cosine").find("two"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
}

}  // namespace
}  // namespace wsm
