// One CLI convention (tools/cli_common.h): sizes are SI with a decimal unit (GB = 1e9) and IEC with a
// binary one (GiB = 2^30) in every option that takes one; shown sizes use IEC units; --dtype takes
// float dtypes only; enum options map the enum's own name table; windows read the same everywhere.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/cli_common.h"
#include "wsm/core/error.h"
#include "wsm/kernels/merge.h"
#include "wsm/schedules/window.h"

namespace wsm::tools {
namespace {

TEST(CliSizes, SiUnitsAreDecimalAndIecUnitsBinary) {
  const std::uint64_t ki = 1024, mi = ki * ki, gi = mi * ki;
  EXPECT_EQ(parse_size("5GB", "--x"), 5'000'000'000ull);
  EXPECT_EQ(parse_size("5G", "--x"), 5'000'000'000ull);
  EXPECT_EQ(parse_size("5GiB", "--x"), 5 * gi);
  EXPECT_EQ(parse_size("5Gi", "--x"), 5 * gi);
  EXPECT_EQ(parse_size("512M", "--x"), 512'000'000ull);
  EXPECT_EQ(parse_size("512MiB", "--x"), 512 * mi);
  EXPECT_EQ(parse_size("200KB", "--x"), 200'000ull);
  EXPECT_EQ(parse_size("64kib", "--x"), 64 * ki);
  EXPECT_EQ(parse_size("1.5K", "--x"), 1500ull);
  EXPECT_EQ(parse_size("2TB", "--x"), 2'000'000'000'000ull);
  EXPECT_EQ(parse_size("1000000", "--x"), 1'000'000ull);
  EXPECT_EQ(parse_size("0", "--x"), 0ull);
}

TEST(CliSizes, BadSizesNameTheOptionAndTheText) {
  for (const char* bad : {"", "GB", "-1", "5XB", "5 GBB", "1e30", "5Bi", "five"}) {
    try {
      parse_size(bad, "--shard-size");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("--shard-size '" + std::string(bad) + "'"), std::string::npos) << what;
    }
  }
}

TEST(CliSizes, EveryCommandsSizeOptionReadsTheSameWay) {
  CLI::App app;
  std::uint64_t shard = 0, budget = 0;
  add_size_option(app, "--shard-size", shard, "");
  add_size_option(app, "--memory-budget", budget, "");
  app.parse(std::vector<std::string>{"8GiB", "--memory-budget", "5GB", "--shard-size"});  // reversed
  EXPECT_EQ(shard, 5'000'000'000ull);
  EXPECT_EQ(budget, 8ull << 30);
  CLI::App bad;
  std::uint64_t x = 0;
  add_size_option(bad, "--shard-size", x, "");
  EXPECT_THROW(bad.parse(std::vector<std::string>{"5XB", "--shard-size"}), CLI::ValidationError);
}

TEST(CliSizes, HumanBytesUsesIecUnits) {
  EXPECT_EQ(human_bytes(0), "0 B");
  EXPECT_EQ(human_bytes(1023), "1023 B");
  EXPECT_EQ(human_bytes(1536), "1.50 KiB");
  EXPECT_EQ(human_bytes(3.25 * 1024 * 1024 * 1024), "3.25 GiB");
}

TEST(CliOptions, DtypeTakesFloatDtypesOnly) {
  for (const auto& [name, want] : std::vector<std::pair<std::string, DType>>{
           {"f32", DType::f32}, {"bf16", DType::bf16}, {"f16", DType::f16}, {"f64", DType::f64}}) {
    CLI::App app;
    std::optional<DType> dtype;
    add_float_dtype_option(app, dtype, "");
    app.parse(std::vector<std::string>{name, "--dtype"});
    EXPECT_EQ(dtype, want) << name;
  }
  for (const char* bad : {"i32", "int8", ""}) {
    CLI::App app;
    std::optional<DType> dtype;
    add_float_dtype_option(app, dtype, "");
    EXPECT_THROW(app.parse(std::vector<std::string>{bad, "--dtype"}), CLI::ValidationError) << bad;
  }
}

TEST(CliOptions, EnumOptionMapsTheEnumsOwnNameTable) {
  for (const auto& [name, kind] : kernels::kBackendKindNames) {
    CLI::App app;
    kernels::BackendKind got = kernels::BackendKind::cpu;
    add_enum_option(app, "--backend", got, kernels::kBackendKindNames, "");
    app.parse(std::vector<std::string>{std::string(name), "--backend"});
    EXPECT_EQ(got, kind) << name;
    EXPECT_EQ(kernels::backend_kind_name(kind), name);
  }
  CLI::App app;
  kernels::BackendKind got = kernels::BackendKind::cpu;
  add_enum_option(app, "--backend", got, kernels::kBackendKindNames, "");
  EXPECT_THROW(app.parse(std::vector<std::string>{"tpu", "--backend"}), CLI::ValidationError);
}

TEST(CliWindows, OneSyntaxForStepsAndTokens) {
  EXPECT_EQ(parse_window("800").value, 800);
  EXPECT_EQ(parse_window("800").axis, Axis::steps);
  EXPECT_EQ(parse_window("50Mt").value, 50'000'000);
  EXPECT_EQ(parse_window("50Mt").axis, Axis::tokens);
  // Where the option already says tokens (--window-tokens), the t may be left out.
  EXPECT_EQ(parse_window("50M", Axis::tokens).value, 50'000'000);
  EXPECT_EQ(parse_window("50M", Axis::tokens).axis, Axis::tokens);
  EXPECT_EQ(parse_window("1.5Gt", Axis::tokens).value, 1'500'000'000);
  EXPECT_EQ(parse_window("123456", Axis::tokens).value, 123456);
  EXPECT_THROW(parse_window("50M"), Error);  // steps take no multiplier
  EXPECT_THROW(parse_window("1.5"), Error);
  EXPECT_THROW(parse_window("0"), Error);
  const SpecWindow sw = parse_spec_at_window("cosine,floor=0.1@50Mt", "--compare-merge");
  EXPECT_EQ(sw.spec, parse_merge_spec("cosine,floor=0.1"));
  EXPECT_EQ(sw.window.value, 50'000'000);
  EXPECT_EQ(parse_spec_at_window("ema:alpha=0.2@1000", "--x").window.value, 1000);
  EXPECT_THROW(parse_spec_at_window("1-sqrt:800", "--x"), Error);
  EXPECT_THROW(parse_spec_at_window("1-sqrt@8@00", "--x"), Error);
}

}  // namespace
}  // namespace wsm::tools
