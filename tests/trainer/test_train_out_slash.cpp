// The README's `wsm train --preset small --steps 2000 --out run/ --merger ...`: a trailing slash in
// --out is a way of writing the folder, not a new name. The run id sent to the merger is the
// folder's name ("run"), so the daemon takes every checkpoint and writes OUT/run/<label>/...
// (an empty id was refused before). folder_name against what `basename` prints.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "tests/merger/serve_test_util.h"
#include "tests/run_command.h"
#include "tests/synthetic_text.h"
#include "wsm/core/file_name.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;

TEST(FolderName, IgnoresTrailingSlashesAndDots) {
  for (const char* p : {"run", "run/", "run//", "run/.", "./run/", "/tmp/x/run/"}) {
    const auto r = test::run_command(std::string("basename '") + p + "'");
    std::string expected = r.out.substr(0, r.out.find('\n'));
    if (expected == ".") expected = "run";  // basename keeps a trailing "/." as "."
    EXPECT_EQ(folder_name(p), expected) << p;
  }
  EXPECT_EQ(folder_name("a/b/../c/"), "c");
}

TEST(TrainOutSlash, RunIdIsTheFolderName) {
  ASSERT_TRUE(fs::exists(test::wsm_binary()));
  const fs::path root = test::temp_dir("train-slash");
  std::ofstream(root / "train.txt") << test::synthetic_text(20000);
  std::ofstream(root / "val.txt") << test::synthetic_text(3000).substr(1000);
  test::ServerThread server(test::server_options(root / "merged", "linear@4", 2));
  const auto r = test::run_wsm("train --preset tiny --steps 6 --every 2 --threads 1 --eval-positions 0 --data '" +
                               (root / "train.txt").string() + "' --val '" + (root / "val.txt").string() + "' --out '" +
                               (root / "run").string() + "/' --merger " + server.endpoint() + " --merger-policy fail-fast");
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  server.server().wait_outputs_idle();
  std::ifstream in(root / "merged" / "index.json");
  ASSERT_TRUE(in) << r.err;
  const auto idx = nlohmann::json::parse(in);
  ASSERT_FALSE(idx["outputs"].empty());
  for (const auto& rec : idx["outputs"]) {
    EXPECT_EQ(rec["run_id"], "run");
    EXPECT_TRUE(fs::exists(rec["path"].get<std::string>()));
  }
  EXPECT_TRUE(fs::is_directory(root / "merged" / "run" / "linear_w4"));
  fs::remove_all(root);
}

}  // namespace
}  // namespace wsm
