// One file-name safe set (wsm/core/file_name.h) behind run ids, offline output stems and the
// daemon's emulation labels: checked byte by byte against the documented set, spelled out here
// independently, and the run-id mapping stays injective (ids outside the set are refused, ids
// inside it are used unchanged).
#include <gtest/gtest.h>

#include <string>

#include "merger/daemon/emulation.h"
#include "merger/daemon/run_id.h"
#include "wsm/core/file_name.h"
#include "wsm/merger/offline_merge.h"

namespace wsm {
namespace {

const std::string kSafe = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

TEST(FileNames, SafeSetIsExactlyTheDocumentedOne) {
  int safe = 0;
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const bool documented = kSafe.find(c) != std::string::npos;
    EXPECT_EQ(is_file_name_char(c), documented) << "byte " << b;
    EXPECT_EQ(file_name_safe(std::string(1, c)), documented ? std::string(1, c) : std::string("_")) << "byte " << b;
    safe += documented;
  }
  EXPECT_EQ(safe, 65);
  EXPECT_EQ(file_name_safe("a/b c=d,e:f\xff"), "a_b_c_d_e_f_");
}

TEST(FileNames, OfflineStemsAndDaemonLabelsAgreeOnEquals) {
  const MergeSpec ema = parse_merge_spec("ema:alpha=0.2");
  EXPECT_EQ(merger::output_stem(ema), file_name_safe(ema.to_string()));
  EXPECT_EQ(merger::output_stem(ema).find('='), std::string::npos);
  const auto e = merger::parse_emulations("ema:alpha=0.2@1000;cosine,floor=0.1@50Mt");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].label, merger::output_stem(ema) + "_w1000");
  EXPECT_EQ(e[1].label, merger::output_stem(parse_merge_spec("cosine,floor=0.1")) + "_w50000000t");
  for (const auto& em : e)
    for (char c : em.label) EXPECT_TRUE(is_file_name_char(c)) << em.label;
}

TEST(FileNames, RunIdsOutsideTheSetAreRefusedNotRewritten) {
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const std::string id = std::string("run") + c;
    EXPECT_EQ(!merger::run_id_problem(id).has_value(), kSafe.find(c) != std::string::npos) << "byte " << b;
  }
  // Accepted ids are their own folder name, so two ids never share one (issue 12: a/b vs a_b).
  for (const char* id : {"a_b", "run-1.x", "R2"}) {
    ASSERT_FALSE(merger::run_id_problem(id).has_value()) << id;
    EXPECT_EQ(file_name_safe(id), id);
    EXPECT_EQ(merger::run_folder("/out", id).filename().string(), id);
  }
  for (const char* id : {"a/b", "a=b", ".", "..", "_", "x.tmp-1", ""}) EXPECT_TRUE(merger::run_id_problem(id)) << id;
}

}  // namespace
}  // namespace wsm
