// wsm/core/split.h: every item kept, empty ones included, against the items written out by hand.
#include <gtest/gtest.h>

#include "wsm/core/split.h"

namespace wsm {
namespace {

using Items = std::vector<std::string>;

TEST(Split, KeepsEveryItemEmptyOnesIncluded) {
  EXPECT_EQ(split_at("1,5,9", ','), (Items{"1", "5", "9"}));
  EXPECT_EQ(split_at("800", ','), (Items{"800"}));
  EXPECT_EQ(split_at("", ','), (Items{""}));
  EXPECT_EQ(split_at("a,,b", ','), (Items{"a", "", "b"}));
  EXPECT_EQ(split_at(",a,", ','), (Items{"", "a", ""}));
  EXPECT_EQ(split_at("linear:200,ema:alpha=0.9", ':'), (Items{"linear", "200,ema", "alpha=0.9"}));
}

}  // namespace
}  // namespace wsm
