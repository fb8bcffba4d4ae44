// `wsm serve --format safetensors|hf --hf-template DIR`: the daemon's merged outputs written as one
// safetensors file or a Hugging Face model directory (shards, index with provenance, the template's
// config and tokenizer files), read back by Python's `safetensors` (tests/merger/serve_hf_check.py)
// and checked against the float64 reference, with the client's model metadata in each (safetensors
// __metadata__, the index's metadata); an index rebuilt after a restart lists them.
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "merger/daemon/output_format.h"
#include "wsm/client/client.h"
#include "serve_test_util.h"

namespace wsm {
namespace {

const std::vector<std::vector<std::int64_t>> kShapes = {{64, 33}, {100}};

std::filesystem::path make_template(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16})";
  std::ofstream(dir / "generation_config.json") << R"({"do_sample": false})";
  std::ofstream(dir / "tokenizer.json") << R"({"version": "1.0", "model": {"type": "BPE"}})";
  std::ofstream(dir / "tokenizer_config.json") << R"({"model_max_length": 64})";
  std::ofstream(dir / "model.safetensors") << "not copied";
  return dir;
}

void stream_and_check(merger::OutputFormat format, const std::string& name) {
  const auto out = test::temp_dir("serve-" + name);
  const auto tmpl = make_template(test::temp_dir("serve-tmpl-" + name) / "tmpl");
  auto opts = test::server_options(out, "linear:300,1-sqrt:400", 200);
  opts.core.output.format = format;
  if (format == merger::OutputFormat::hf) {
    opts.core.output.hf_template = tmpl;
    opts.core.output.shard_bytes = 4000;  // layer0 (8448 bytes) and the rest: 2 shards
  }
  {
    test::ServerThread server(opts);
    ClientOptions co;
    co.endpoint = server.endpoint();
    co.run_id = "hf";
    co.metadata = {{"hf.config", R"({"model_type": "gpt2", "n_layer": 1})"}, {"note", "sent at hello"}};  // serve_hf_check.py's
    MergerClient client(co);
    for (std::int64_t step = 0; step <= 600; step += 100) {
      auto model = test::make_model(step, kShapes);
      auto v = test::views(model);
      std::int64_t counter = step;
      v.push_back({"step_counter", DType::i64, {1}, {reinterpret_cast<const std::byte*>(&counter), 8}});
      client.send_checkpoint(step, step * 1000, 1e-3, v);
      client.flush();
      server.server().wait_outputs_idle();
    }
  }
  std::ifstream in(out / "index.json");
  const auto index = nlohmann::json::parse(in);
  ASSERT_GE(index["outputs"].size(), 4u) << index.dump(2);
  for (const auto& rec : index["outputs"]) {
    const std::filesystem::path p = rec["path"].get<std::string>();
    if (format == merger::OutputFormat::hf) {
      EXPECT_TRUE(std::filesystem::is_directory(p)) << p;
      EXPECT_TRUE(std::filesystem::exists(p / "model-00001-of-00002.safetensors")) << p;
    } else {
      EXPECT_EQ(p.extension(), ".safetensors") << p;
    }
  }
  const std::string cmd = std::string(WSM_PYTHON) + " " + WSM_SOURCE_DIR + "/tests/merger/serve_hf_check.py " +
                          out.string() + " " + name + " " + tmpl.string() + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;

  // A restart rebuilds the index from the files: the outputs in this format are found again.
  std::filesystem::remove(out / "index.json");
  { test::ServerThread again(opts); }
  std::ifstream in2(out / "index.json");
  ASSERT_TRUE(in2) << "no index.json after a restart";
  EXPECT_EQ(nlohmann::json::parse(in2)["outputs"].size(), index["outputs"].size());
}

TEST(ServeFormats, HuggingFaceDirectoriesLoadWithSafetensors) { stream_and_check(merger::OutputFormat::hf, "hf"); }

TEST(ServeFormats, SafetensorsFilesLoadWithSafetensors) {
  stream_and_check(merger::OutputFormat::safetensors, "safetensors");
}

TEST(ServeFormats, OptionsAreCheckedAtStart) {
  merger::OutputFormatOptions o;
  o.format = merger::OutputFormat::hf;
  EXPECT_NO_THROW(merger::check_output_format(o));  // no template: config.json from the run's hf.config
  o.hf_template = test::temp_dir("serve-not-a-model");
  EXPECT_THROW(merger::check_output_format(o), Error);  // no config.json
  o.format = merger::OutputFormat::h5;
  EXPECT_THROW(merger::check_output_format(o), Error);  // a template without --format hf
  EXPECT_FALSE(merger::parse_output_format("hdf5"));
  EXPECT_EQ(merger::output_path("o/r/l/step_000000000600.h5", merger::OutputFormat::hf), "o/r/l/step_000000000600");
  EXPECT_EQ(merger::output_path("o/r/l/step_000000000600.h5", merger::OutputFormat::safetensors),
            "o/r/l/step_000000000600.safetensors");
}

}  // namespace
}  // namespace wsm
