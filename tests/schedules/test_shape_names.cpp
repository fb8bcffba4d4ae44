// Shape names a user may type: "sqrt" is ambiguous (1-sqrt and inverse-sqrt are different decays,
// docs/method-guide.md) and is refused with the two names to choose from, wherever a shape is read: merge
// specs, --shape lists, --emulate, and a WSD schedule's shape=.
#include <gtest/gtest.h>

#include <functional>

#include "merger/daemon/emulation.h"
#include "wsm/core/error.h"
#include "wsm/schedules/decay.h"
#include "wsm/schedules/schedule.h"
#include "tests/run_command.h"

namespace wsm {
namespace {

void expect_ambiguous(const std::function<void()>& parse, const std::string& what) {
  try {
    parse();
    ADD_FAILURE() << what << ": 'sqrt' was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("ambiguous"), std::string::npos) << what << ": " << msg;
    EXPECT_NE(msg.find("1-sqrt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("inverse-sqrt"), std::string::npos) << msg;
  }
}

TEST(ShapeNames, SqrtIsRefusedAsAmbiguous) {
  EXPECT_EQ(parse_decay_shape("sqrt"), std::nullopt);
  expect_ambiguous([] { parse_merge_spec("sqrt"); }, "merge spec");
  expect_ambiguous([] { parse_merge_spec_list("linear,sqrt,floor=0.1"); }, "spec list");
  expect_ambiguous([] { parse_schedule("wsd:warmup=10,decay=20,shape=sqrt"); }, "schedule");
  expect_ambiguous([] { merger::parse_emulations("linear:100,sqrt:200"); }, "emulations");
  // The two real shapes keep their names and differ (docs/schedules.md: "Not the same as 1-sqrt").
  EXPECT_EQ(parse_decay_shape("1-sqrt"), DecayShape::one_minus_sqrt);
  EXPECT_EQ(parse_decay_shape("inverse-sqrt"), DecayShape::inverse_sqrt);
  EXPECT_NE(merge_weights(parse_merge_spec("1-sqrt"), 5), merge_weights(parse_merge_spec("inverse-sqrt"), 5));
}

TEST(ShapeNames, TheCliSaysSoToo) {
  if (!std::filesystem::exists(test::wsm_binary())) GTEST_SKIP() << test::wsm_binary() << " is not built";
  const auto r = test::run_wsm("weights --shape sqrt --count 5");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("'sqrt' is ambiguous"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// The documented --shape example parses (the papercut fixed earlier; checked here with the rest).
TEST(ShapeNames, DocumentedShapeListParses) {
  const auto specs = parse_merge_spec_list("linear,cosine,floor=0.1,ema:alpha=0.2");
  ASSERT_EQ(specs.size(), 3u);
  EXPECT_EQ(specs[0].to_string(), "linear");
  EXPECT_EQ(specs[1].to_string(), parse_merge_spec("cosine,floor=0.1").to_string());
  EXPECT_EQ(specs[2].to_string(), parse_merge_spec("ema:alpha=0.2").to_string());
  EXPECT_NE(specs[1].to_string(), parse_merge_spec("cosine").to_string());  // the floor attached
}

}  // namespace
}  // namespace wsm
