// MergeSpec's text form: what the CLI and every merged output's metadata use.
#include <gtest/gtest.h>

#include <string>

#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"

namespace wsm {
namespace {

TEST(MergeSpecText, ParsesTheDocumentedForms) {
  auto s = parse_merge_spec("1-sqrt");
  ASSERT_TRUE(s.shape());
  EXPECT_EQ(s.shape()->shape, DecayShape::one_minus_sqrt);
  EXPECT_EQ(s.floor(), 0.0);

  s = parse_merge_spec("cosine,floor=0.1");
  EXPECT_EQ(s, MergeSpec(ShapeRule{DecayShape::cosine, 0.1}));

  s = parse_merge_spec("ema");  // the paper's exponential curve, a shape
  EXPECT_EQ(s, MergeSpec(ShapeRule{DecayShape::exponential}));

  s = parse_merge_spec("ema:alpha=0.2");  // PMA's EMA, per checkpoint
  ASSERT_TRUE(s.ema());
  EXPECT_EQ(s.ema()->alpha, 0.2);
  EXPECT_TRUE(s.per_checkpoint());

  s = parse_merge_spec("wma");
  EXPECT_EQ(s, MergeSpec(ShapeRule{DecayShape::wma}));
  EXPECT_TRUE(s.per_checkpoint());

  s = parse_merge_spec("weights=0.1,0.2,0.7");
  ASSERT_TRUE(s.table());
  EXPECT_EQ(s.table()->kind, TableRule::Kind::merge_weights);
  EXPECT_EQ(s.table()->values, (std::vector<double>{0.1, 0.2, 0.7}));
  EXPECT_EQ(s.kind_name(), "weights");

  s = parse_merge_spec("decay=1,0.5,0.25");
  EXPECT_EQ(s, MergeSpec(TableRule{TableRule::Kind::decay, {1, 0.5, 0.25}}));

  s = parse_merge_spec("decay=1,0.2,0.5,allow-non-monotone");
  ASSERT_TRUE(s.table());
  EXPECT_TRUE(s.table()->allow_non_monotone);
  EXPECT_EQ(s.table()->values.size(), 3u);
}

TEST(MergeSpecText, RoundTripsExactly) {
  // "ema" alone is an alias of the paper's curve and prints as its canonical name.
  EXPECT_EQ(parse_merge_spec("ema").to_string(), "exponential");
  for (const char* text : {"1-sqrt", "cosine,floor=0.1", "exponential", "ema:alpha=0.2", "ema:alpha=0.2,floor=0.1",
                           "wma", "wma,floor=0.05", "inverse-sqrt,floor=0.3", "linear", "weights=0.1,0.2,0.7",
                           "decay=1,0.5,0.25", "decay=1,0.2,0.5,allow-non-monotone", "decay="}) {
    const auto s = parse_merge_spec(text);
    EXPECT_EQ(s.to_string(), text);
    EXPECT_EQ(parse_merge_spec(s.to_string()), s) << text;
  }
  // Values that do not print short still come back bit-exact.
  const MergeSpec s = ShapeRule{DecayShape::cosine, 1.0 / 3.0};
  EXPECT_EQ(parse_merge_spec(s.to_string()), s);
  const MergeSpec t = TableRule{TableRule::Kind::merge_weights, {1.0 / 3, 2.0 / 3, 1e-300}};
  EXPECT_EQ(parse_merge_spec(t.to_string()), t);
}

TEST(MergeSpecText, FloorAppliesToShapesAndEmaOnly) {
  MergeSpec s = parse_merge_spec("ema:alpha=0.5");
  s.set_floor(0.25);
  EXPECT_EQ(s.to_string(), "ema:alpha=0.5,floor=0.25");
  MergeSpec t = parse_merge_spec("weights=1,1");
  EXPECT_THROW(t.set_floor(0.1), Error);
}

TEST(MergeSpecText, RejectsBadSpecsNamingThePart) {
  const auto message = [](const char* text) {
    try {
      parse_merge_spec(text);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message("triangle").find("triangle"), std::string::npos);
  EXPECT_NE(message("cosine,floor=x").find("floor"), std::string::npos);
  EXPECT_NE(message("cosine,floor=2").find("floor"), std::string::npos);
  EXPECT_NE(message("cosine,speed=2").find("speed"), std::string::npos);
  EXPECT_NE(message("cosine,alpha=0.2").find("alpha"), std::string::npos);
  EXPECT_NE(message("ema:alpha=1.5").find("alpha"), std::string::npos);
  EXPECT_NE(message("weights=0.5,0.5,floor=0.1").find("floor"), std::string::npos);
  EXPECT_NE(message("").find("empty"), std::string::npos);
  EXPECT_NE(message("cosine,allow-non-monotone").find("tables only"), std::string::npos);
  EXPECT_NE(message("decay=1,oops").find("oops"), std::string::npos);
}

}  // namespace
}  // namespace wsm

namespace wsm {
namespace {

// `--shape` lists: options attach to the spec before them, a new shape or table starts a new spec
// (the documented example used to fail: ema:alpha=0.2 was taken for an option of cosine).
TEST(MergeSpecList, SplitsTheDocumentedExample) {
  const auto specs = parse_merge_spec_list("linear,cosine,floor=0.1,ema:alpha=0.2,weights=0.2,0.8,1-sqrt");
  ASSERT_EQ(specs.size(), 5u);
  EXPECT_EQ(specs[0], MergeSpec(ShapeRule{DecayShape::linear}));
  EXPECT_EQ(specs[1], MergeSpec(ShapeRule{DecayShape::cosine, 0.1}));
  EXPECT_EQ(specs[2], MergeSpec(EmaRule{0.2}));
  EXPECT_EQ(specs[3], MergeSpec(TableRule{TableRule::Kind::merge_weights, {0.2, 0.8}}));
  EXPECT_EQ(specs[4], MergeSpec(ShapeRule{DecayShape::one_minus_sqrt}));  // floor= belonged to cosine only
  EXPECT_THROW(parse_merge_spec_list("linear,bogus"), Error);
  EXPECT_TRUE(parse_merge_spec_list(" , ").empty());
}

}  // namespace
}  // namespace wsm
