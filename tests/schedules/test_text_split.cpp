// wsm/schedules/text.h's split: every item kept, empty ones included (callers such as --seeds,
// --keep-states and the legacy --emulate form decide what an empty item means), against the items
// written out by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "wsm/schedules/text.h"

namespace wsm {
namespace {

using Items = std::vector<std::string>;

Items split(std::string_view text, char sep) {
  Items out;
  for (const auto item : text::split(text, sep)) out.emplace_back(item);
  return out;
}

TEST(TextSplit, KeepsEveryItemEmptyOnesIncluded) {
  EXPECT_EQ(split("1,5,9", ','), (Items{"1", "5", "9"}));
  EXPECT_EQ(split("800", ','), (Items{"800"}));
  EXPECT_EQ(split("", ','), (Items{""}));
  EXPECT_EQ(split("a,,b", ','), (Items{"a", "", "b"}));
  EXPECT_EQ(split(",a,", ','), (Items{"", "a", ""}));
  EXPECT_EQ(split("linear:200,ema:alpha=0.9", ':'), (Items{"linear", "200,ema", "alpha=0.9"}));
}

}  // namespace
}  // namespace wsm
