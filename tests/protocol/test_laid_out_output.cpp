// Laid-out outputs filled by several writers (what `wsm merge` ranks do): the output's own writer
// creates and sizes the files, RangeFileWriters fill disjoint byte ranges in any split, and the
// committed checkpoint equals save_checkpoint's, for every format and dtype; incomplete or
// out-of-range writes are refused. Hugging Face directories: side files copied, weights not.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/hf_directory.h"
#include "wsm/formats/range_file_writer.h"
#include "tests/protocol/test_util.h"

namespace wsm {
namespace {

using test::TempDir;

std::vector<TensorInfo> infos(const Checkpoint& c) {
  std::vector<TensorInfo> v;
  for (const auto& t : c.tensors) v.push_back(t.info);
  return v;
}

// Fills `layout` through `parts` writers, each tensor cut at `parts - 1` points of its bytes.
void fill_in_parts(const std::vector<LaidOutFile>& layout, const Checkpoint& c, std::size_t parts) {
  for (std::size_t p = 0; p < parts; ++p) {
    std::vector<TensorByteRange> ranges;
    for (const auto& t : c.tensors) {
      const std::uint64_t n = t.data.size(), a = n * p / parts, b = n * (p + 1) / parts;
      if (b > a) ranges.push_back({t.info.name, a, b - a});  // as split_work: no empty pieces
    }
    RangeFileWriter w(layout, ranges);
    for (const auto& r : ranges) {
      const auto& t = *std::find_if(c.tensors.begin(), c.tensors.end(), [&](const Tensor& x) { return x.info.name == r.tensor; });
      // two writes per range, so offsets relative to the range are exercised
      const std::uint64_t half = r.size / 2;
      w.write(r.tensor, 0, std::span(t.data).subspan(r.begin, half));
      w.write(r.tensor, half, std::span(t.data).subspan(r.begin + half, r.size - half));
    }
    w.prepare();
  }
}

void expect_same_tensors(const Checkpoint& want, const std::filesystem::path& path) {
  const Checkpoint got = load_checkpoint(path);
  ASSERT_EQ(got.tensors.size(), want.tensors.size()) << path;
  for (std::size_t i = 0; i < want.tensors.size(); ++i) {
    EXPECT_EQ(got.tensors[i].info, want.tensors[i].info) << path;
    EXPECT_TRUE(got.tensors[i].data == want.tensors[i].data) << path << " tensor " << want.tensors[i].info.name;
  }
  EXPECT_EQ(got.meta.step, want.meta.step);
  EXPECT_EQ(got.meta.extra.at("schedule"), "1-sqrt");
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

TEST(LaidOutOutput, FilledInPartsEqualsOneWriterInEveryFormat) {
  TempDir dir;
  const Checkpoint c = test::sample_checkpoint(7);
  for (const std::string out : {"a.safetensors", "b.h5", "c_dir"}) {
    WriteOptions o;
    if (out == "c_dir") o.shard_bytes = 100;  // several shards
    for (std::size_t parts : {1, 2, 3}) {
      const auto path = dir / (std::to_string(parts) + out);
      auto owner = create_laid_out_checkpoint(path, c.meta, infos(c), o);
      ASSERT_FALSE(owner->layout().empty()) << out;
      fill_in_parts(owner->layout(), c, parts);
      owner->commit();
      expect_same_tensors(c, path);
    }
    // the same bytes whatever the number of writers (HDF5 included: no timestamps)
    if (out != "c_dir") {
      EXPECT_EQ(slurp(dir / ("1" + out)), slurp(dir / ("2" + out))) << out;
      EXPECT_EQ(slurp(dir / ("1" + out)), slurp(dir / ("3" + out))) << out;
    }
  }
}

TEST(LaidOutOutput, IncompleteOrOutOfRangeWritesAreRefused) {
  TempDir dir;
  const Checkpoint c = test::sample_checkpoint(3);
  auto owner = create_laid_out_checkpoint(dir / "x.safetensors", c.meta, infos(c), {});
  const Tensor& t = c.tensors.front();
  ASSERT_GE(t.data.size(), 4u);
  RangeFileWriter w(owner->layout(), {{t.info.name, 2, t.data.size() - 2}});
  EXPECT_THROW(w.write(t.info.name, 1, std::span(t.data)), Error);  // past the range's end
  EXPECT_THROW(w.write("no-such-tensor", 0, std::span(t.data).first(1)), Error);
  w.write(t.info.name, 0, std::span(t.data).first(1));
  try {
    w.prepare();
    FAIL() << "an incomplete range was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only 1 of the"), std::string::npos) << e.what();
  }
  EXPECT_THROW(RangeFileWriter(owner->layout(), {{"no-such-tensor", 0, 1}}), Error);
  EXPECT_THROW(create_laid_out_checkpoint(dir / "z.h5", c.meta, infos(c), {.compression = 4}), Error);
}

TEST(HfDirectory, CopiesConfigAndTokenizerFilesNotWeightsOrTrainerState) {
  TempDir dir;
  const auto tmpl = dir / "template";
  std::filesystem::create_directories(tmpl);
  const std::vector<std::string> side = {"config.json", "generation_config.json", "tokenizer.json",
                                         "tokenizer_config.json", "special_tokens_map.json", "merges.txt",
                                         "modeling_custom.py"};
  for (const auto& n : side) std::ofstream(tmpl / n) << "{\"file\": \"" << n << "\"}";
  for (const auto& n : {"model.safetensors", "optimizer.pt", "trainer_state.json", "rng_state.pth", "notes.py"})
    std::ofstream(tmpl / n) << "x";
  EXPECT_TRUE(is_hf_model_dir(tmpl));
  auto expected = side;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(hf_side_files(tmpl), expected);

  const Checkpoint c = test::sample_checkpoint(5);
  auto w = create_hf_directory(dir / "out", c.meta, infos(c), tmpl, 200);
  for (const auto& t : c.tensors) w->write(t.info.name, 0, t.data);
  w->commit();
  for (const auto& n : side)
    if (n != "config.json") {
      EXPECT_EQ(slurp(dir / "out" / n), slurp(tmpl / n)) << n;
    }
  // config.json: the template's keys, its dtype the one most float bytes have (f32: 105 elements,
  // beside 1 f16, 0 bf16 and 17 f64), under transformers 4's and 5's names.
  EXPECT_EQ(nlohmann::json::parse(slurp(dir / "out" / "config.json")),
            nlohmann::json::parse(R"({"file": "config.json", "torch_dtype": "float32", "dtype": "float32"})"));
  for (const auto& n : {"optimizer.pt", "trainer_state.json", "rng_state.pth", "notes.py", "model.safetensors"})
    EXPECT_FALSE(std::filesystem::exists(dir / "out" / n)) << n;
  EXPECT_TRUE(std::filesystem::exists(dir / "out" / "model-00001-of-00003.safetensors") ||
              std::filesystem::exists(dir / "out" / "model.safetensors.index.json"));
  expect_same_tensors(c, dir / "out");

  // not a model directory: refused before anything is created
  std::filesystem::remove(tmpl / "config.json");
  EXPECT_THROW(create_hf_directory(dir / "out2", c.meta, infos(c), tmpl), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "out2"));
}

// No template: config.json from the metadata's "hf.config" (the key order kept, the dtype set to
// the one written: bf16 here although the sender said float32); no hf.config, no config.json.
TEST(HfDirectory, ConfigFromMetadataWithTheWrittenDtype) {
  TempDir dir;
  Checkpoint c;
  c.meta.step = 7;
  c.meta.extra[kHfConfigKey] = R"({"model_type": "gpt2", "torch_dtype": "float32", "n_embd": 4})";
  c.tensors.push_back({{"w", DType::bf16, {4}}, std::vector<std::byte>(8)});
  c.tensors.push_back({{"step", DType::i64, {1}}, std::vector<std::byte>(8)});
  auto w = create_hf_directory(dir / "out", c.meta, infos(c), {}, 1000);
  for (const auto& t : c.tensors) w->write(t.info.name, 0, t.data);
  w->commit();
  const auto config = nlohmann::ordered_json::parse(slurp(dir / "out" / "config.json"));
  EXPECT_EQ(config.dump(), R"({"model_type":"gpt2","torch_dtype":"bfloat16","n_embd":4,"dtype":"bfloat16"})");
  EXPECT_FALSE(std::filesystem::exists(dir / "out" / "tokenizer.json"));

  c.meta.extra.clear();
  auto plain = create_hf_directory(dir / "plain", c.meta, infos(c), {}, 1000);
  for (const auto& t : c.tensors) plain->write(t.info.name, 0, t.data);
  plain->commit();
  EXPECT_FALSE(std::filesystem::exists(dir / "plain" / "config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir / "plain" / "model.safetensors.index.json"));

  c.meta.extra[kHfConfigKey] = "not json";
  auto bad = create_hf_directory(dir / "bad", c.meta, infos(c), {}, 1000);
  for (const auto& t : c.tensors) bad->write(t.info.name, 0, t.data);
  EXPECT_THROW(bad->commit(), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
}

}  // namespace
}  // namespace wsm
