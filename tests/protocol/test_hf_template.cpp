// Issue 23, item 13: `--hf-template DIR` (and `wsm merge` of Hugging Face folders) copies the
// template's side files into every output. A symlink there pointing outside the template (e.g. to
// /etc/passwd) was copied into every output, a sparse file was written dense, and a symlink loop
// made every output fail. Now: targets outside the template are refused at start (the Hugging Face
// hub cache's snapshots/<rev>/ -> ../../blobs/ links are inside their repository and allowed),
// loops are refused at start naming the file, and holes stay holes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/protocol/test_util.h"
#include "tests/run_command.h"
#include "wsm/core/error.h"
#include "wsm/formats/hf_directory.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string template_error(const fs::path& dir) {
  try {
    check_hf_template(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HfTemplate, SymlinkOutsideTheTemplateIsRefused) {
  test::TempDir root;
  write(root / "secret", "root:x:0:0\n");
  const fs::path t = root / "template";
  write(t / "config.json", "{}");
  fs::create_symlink(root / "secret", t / "tokenizer.json");
  const std::string error = template_error(t);
  EXPECT_NE(error.find("tokenizer.json"), std::string::npos) << error;
  EXPECT_NE(error.find("outside"), std::string::npos) << error;
  fs::create_directories(root / "out");
  EXPECT_THROW(copy_hf_side_files(t, root / "out"), Error);
  EXPECT_FALSE(fs::exists(root / "out" / "tokenizer.json"));
}

TEST(HfTemplate, LinksInsideTheTemplateOrItsHubRepositoryAreCopied) {
  test::TempDir root;
  // huggingface_hub's cache: models--org--name/snapshots/<rev>/<file> -> ../../blobs/<hash>.
  const fs::path repo = root / "models--org--tiny";
  write(repo / "blobs" / "c0ffee", "{\"model_type\": \"llama\"}");
  write(repo / "blobs" / "beef", "{\"version\": \"1.0\"}");
  const fs::path snap = repo / "snapshots" / "abc123";
  fs::create_directories(snap);
  fs::create_symlink("../../blobs/c0ffee", snap / "config.json");
  fs::create_symlink("../../blobs/beef", snap / "tokenizer.json");
  write(snap / "sub" / "vocab.real", "a b c");
  fs::create_symlink("sub/vocab.real", snap / "vocab.txt");
  EXPECT_EQ(template_error(snap), "");
  fs::create_directories(root / "out");
  copy_hf_side_files(snap, root / "out");
  EXPECT_EQ(test::slurp(root / "out" / "config.json"), "{\"model_type\": \"llama\"}");
  EXPECT_EQ(test::slurp(root / "out" / "tokenizer.json"), "{\"version\": \"1.0\"}");
  EXPECT_EQ(test::slurp(root / "out" / "vocab.txt"), "a b c");
  EXPECT_FALSE(fs::is_symlink(root / "out" / "config.json"));  // the outputs hold the bytes
}

TEST(HfTemplate, SymlinkLoopIsRefusedAtStart) {
  test::TempDir root;
  const fs::path t = root / "template";
  write(t / "config.json", "{}");
  fs::create_symlink("merges.txt", t / "vocab.json");
  fs::create_symlink("vocab.json", t / "merges.txt");
  const std::string error = template_error(t);
  EXPECT_NE(error.find("merges.txt"), std::string::npos) << error;
  EXPECT_NE(error.find("symbolic link"), std::string::npos) << error;
  // config.json itself a loop: named as such, not "no config.json".
  const fs::path u = root / "template2";
  fs::create_directories(u);
  fs::create_symlink("config.json", u / "config.json");
  EXPECT_NE(template_error(u).find("symbolic link"), std::string::npos) << template_error(u);
}

TEST(HfTemplate, SparseSideFileStaysSparse) {
  test::TempDir root;
  const fs::path t = root / "template";
  write(t / "config.json", "{}");
  constexpr std::uint64_t kSize = 256ull << 20, kAt = 100ull << 20;
  {
    std::ofstream f(t / "tokenizer.model", std::ios::binary);
    f.seekp(std::streamoff(kAt));
    f << "data in the middle";
  }
  fs::resize_file(t / "tokenizer.model", kSize);
  struct stat st {};
  ASSERT_EQ(::stat((t / "tokenizer.model").c_str(), &st), 0);
  if (std::uint64_t(st.st_blocks) * 512 > (1u << 20)) GTEST_SKIP() << "this file system does not keep holes";
  fs::create_directories(root / "out");
  copy_hf_side_files(t, root / "out");
  ASSERT_EQ(::stat((root / "out" / "tokenizer.model").c_str(), &st), 0);
  EXPECT_EQ(std::uint64_t(st.st_size), kSize);
  EXPECT_LT(std::uint64_t(st.st_blocks) * 512, 1u << 20) << "the copy was written dense";
  std::ifstream in(root / "out" / "tokenizer.model", std::ios::binary);
  std::string head(16, '?'), mid(18, '?');
  in.read(head.data(), 16);
  EXPECT_EQ(head, std::string(16, '\0'));
  in.seekg(std::streamoff(kAt));
  in.read(mid.data(), 18);
  EXPECT_EQ(mid, "data in the middle");
}

}  // namespace
}  // namespace wsm
