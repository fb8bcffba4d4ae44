// Where a checkpoint's step comes from when the file records none (wsm/formats/trainer_folder.h):
// Hugging Face Trainer folders as transformers writes them, checkpoint-N names, wsm's own names at
// every width (wsm/formats/checkpoint_name.h), PATH@STEP; and torch.save files (written here by real
// torch.save) refused by name with the converter's command (protocol/formats/torch_format.h).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/checkpoint_name.h"
#include "wsm/core/error.h"
#include "wsm/formats/trainer_folder.h"
#include "tests/hf_trainer_folder.h"
#include "tests/protocol/test_util.h"
#include "tests/run_command.h"

namespace wsm {
namespace {
namespace fs = std::filesystem;

std::vector<Tensor> small_model(std::uint32_t seed) { return {test::random_tensor("model.w", DType::f32, {4, 3}, seed)}; }

TEST(CheckpointName, OneWidthWrittenEveryWidthRead) {
  EXPECT_EQ(checkpoint_file_name(600), "step_000000000600.h5");
  EXPECT_EQ(checkpoint_file_name(0, ".safetensors"), "step_000000000000.safetensors");
  EXPECT_THROW(checkpoint_file_name(-1), Error);
  EXPECT_EQ(step_from_file_name("run/step_000000000600.h5"), 600);
  EXPECT_EQ(step_from_file_name("run/step_00000600.h5"), 600);  // the trainer's older 8 digits
  EXPECT_EQ(step_from_file_name("step_7.safetensors"), 7);
  EXPECT_EQ(step_from_file_name("run/step_000000000600.h5.tmp-12-0"), std::nullopt);
  EXPECT_EQ(step_from_file_name("state_00000600.h5"), std::nullopt);
  EXPECT_EQ(step_from_file_name("step_.h5"), std::nullopt);
  EXPECT_EQ(step_from_file_name("step_12a.h5"), std::nullopt);
  // Written names sort by step as text.
  EXPECT_LT(checkpoint_file_name(999), checkpoint_file_name(1000));
}

TEST(TrainerFolder, StepTokensAndLrFromTrainerState) {
  test::TempDir dir;
  const auto ckpt = test::write_hf_checkpoint(dir.path(), 1000, small_model(1), 3.5e-5, 2048000);
  auto r = open_checkpoint(ckpt);
  EXPECT_EQ(r->meta().step, 1000);
  EXPECT_EQ(r->meta().tokens, 2048000);
  EXPECT_EQ(r->meta().lr, 3.5e-5);  // the learning_rate logged at global_step, not the earlier one
  EXPECT_EQ(r->meta().extra.at("wsm.step_source"), "trainer_state.json");
  EXPECT_EQ(r->tensors().size(), 1u);
  // The model file inside the folder finds the same state.
  EXPECT_EQ(open_checkpoint(ckpt / "model.safetensors")->meta().step, 1000);
}

TEST(TrainerFolder, FolderNameWithoutTrainerState) {
  test::TempDir dir;
  const auto ckpt = test::write_hf_checkpoint(dir.path(), 1500, small_model(2), 1e-4, 0, /*trainer_state=*/false);
  auto r = open_checkpoint(ckpt);
  EXPECT_EQ(r->meta().step, 1500);
  EXPECT_EQ(r->meta().tokens, std::nullopt);
  EXPECT_EQ(r->meta().extra.at("wsm.step_source"), "folder name");
}

TEST(TrainerFolder, RecordedStepWinsAndPlainFilesHaveNone) {
  test::TempDir dir;
  Checkpoint c;
  c.meta.step = 42;
  c.tensors = small_model(3);
  fs::create_directories(dir / "checkpoint-7");
  save_checkpoint(dir / "checkpoint-7" / "model.safetensors", c);
  EXPECT_EQ(open_checkpoint(dir / "checkpoint-7")->meta().step, 42);
  c.meta.step.reset();
  save_checkpoint(dir / "weights.safetensors", c);
  EXPECT_EQ(open_checkpoint(dir / "weights.safetensors")->meta().step, std::nullopt);
  save_checkpoint(dir / "step_00000300.safetensors", c);
  EXPECT_EQ(open_checkpoint(dir / "step_00000300.safetensors")->meta().step, 300);
}

TEST(TrainerFolder, BrokenTrainerStateIsNamed) {
  test::TempDir dir;
  const auto ckpt = test::write_hf_checkpoint(dir.path(), 500, small_model(4), 1e-4, 0);
  test::write_text(ckpt / "trainer_state.json", R"({"global_step": "500"})");
  try {
    open_checkpoint(ckpt);
    FAIL() << "a trainer_state.json without an integer global_step was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((ckpt / "trainer_state.json").string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("global_step"), std::string::npos) << e.what();
  }
  test::write_text(ckpt / "trainer_state.json", "{not json");
  EXPECT_THROW(open_checkpoint(ckpt), Error);
}

// Issue 23, item 14: a trainer_state.json whose global_step disagrees with the checkpoint-N
// folder's name still wins (it is what the Trainer recorded), but says so.
TEST(TrainerFolder, StepDisagreeingWithFolderNameWarns) {
  test::TempDir dir;
  const auto written = test::write_hf_checkpoint(dir.path(), 1000, small_model(6), 1e-4, 0);
  const fs::path renamed = dir / "checkpoint-1200";
  fs::rename(written, renamed);
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  sink->set_level(spdlog::level::warn);
  sink->set_pattern("%v");
  spdlog::default_logger()->sinks().push_back(sink);
  const auto step = open_checkpoint(renamed)->meta().step;
  const auto agreeing = open_checkpoint(test::write_hf_checkpoint(dir.path(), 500, small_model(7), 1e-4, 0))->meta().step;
  spdlog::default_logger()->sinks().pop_back();
  const auto warnings = sink->last_formatted();
  EXPECT_EQ(step, 1000);
  EXPECT_EQ(agreeing, 500);
  ASSERT_EQ(warnings.size(), 1u);  // the agreeing folder says nothing
  EXPECT_NE(warnings[0].find("global_step 1000"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("checkpoint-1200"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("@STEP"), std::string::npos) << warnings[0];
}

double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

// A long run's trainer_state.json (log_history of every logging step, evaluations) is read as a
// stream: a 64 MB file used to cost ~10x its size as a JSON tree, per rank of a `wsm merge`.
TEST(TrainerFolder, LargeTrainerStateIsStreamed) {
  test::TempDir dir;
  const auto ckpt = test::write_hf_checkpoint(dir.path(), 300000, small_model(8), 1e-4, 0);
  {
    std::ofstream f(ckpt / "trainer_state.json", std::ios::binary);
    // global_step after log_history here (a Trainer sorts keys; other writers need not).
    f << "{\"log_history\": [";
    for (int s = 1; s <= 300000; ++s)
      f << (s > 1 ? "," : "") << "{\"epoch\": 0.5, \"grad_norm\": 1.25, \"learning_rate\": " << (s == 300000 ? 2.5e-5 : 1e-3)
        << ", \"loss\": 2.0, \"step\": " << s << ", \"note\": \"" << std::string(120, 'x') << "\"}";
    f << "], \"num_input_tokens_seen\": 77, \"nested\": {\"global_step\": 5}, \"global_step\": 300000}";
  }
  ASSERT_GT(fs::file_size(ckpt / "trainer_state.json"), 60u << 20);
  const double before = peak_rss_mib();
  const auto r = open_checkpoint(ckpt);
  EXPECT_LT(peak_rss_mib() - before, 48.0) << "MiB for a " << fs::file_size(ckpt / "trainer_state.json") << "-byte file";
  EXPECT_EQ(r->meta().step, 300000);  // the top-level key, not the nested one
  EXPECT_EQ(r->meta().tokens, 77);
  EXPECT_EQ(r->meta().lr, 2.5e-5);
}

TEST(CheckpointArg, PathAtStep) {
  test::TempDir dir;
  EXPECT_EQ(parse_checkpoint_arg("a.safetensors@300").path, "a.safetensors");
  EXPECT_EQ(parse_checkpoint_arg("a.safetensors@300").step, 300);
  EXPECT_EQ(parse_checkpoint_arg("a.safetensors").step, std::nullopt);
  EXPECT_EQ(parse_checkpoint_arg("a@b.safetensors").step, std::nullopt);  // not a step: a path
  EXPECT_EQ(parse_checkpoint_arg("a.safetensors@-3").step, std::nullopt);
  // A file whose name really ends in @digits is taken whole.
  const auto odd = (dir / "x@12").string();
  test::write_text(odd, "x");
  EXPECT_EQ(parse_checkpoint_arg(odd).path, odd);
  EXPECT_EQ(parse_checkpoint_arg(odd).step, std::nullopt);
}

// Every torch.save file a Trainer folder holds, written by torch itself, is refused by name.
TEST(TorchFormat, TorchSaveFilesAreNamedWithTheConverter) {
  test::TempDir dir;
  const auto ckpt = test::write_hf_checkpoint(dir.path(), 500, small_model(5), 1e-4, 0);
  ASSERT_EQ(test::write_torch_files({ckpt}), 0)
      << WSM_PYTHON << " could not run torch.save; tools/install-deps.sh installs python3-torch";
  for (const char* name : {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"}) {
    try {
      open_checkpoint(ckpt / name);
      FAIL() << name << " was opened";
    } catch (const Error& e) {
      const std::string msg = e.what();
      const bool legacy = std::string(name) == "training_args.bin";
      EXPECT_NE(msg.find(legacy ? "legacy torch.save pickle" : "torch.save zip archive"), std::string::npos) << msg;
      EXPECT_NE(msg.find("python -m wsm_client.convert " + (ckpt / name).string()), std::string::npos) << msg;
      EXPECT_EQ(msg.find("header length"), std::string::npos) << msg;
    }
  }
  // The folder itself still opens: model.safetensors is the model.
  EXPECT_EQ(open_checkpoint(ckpt)->tensors().size(), 1u);
  // An old-style folder with only pytorch_model.bin names that file.
  fs::remove(ckpt / "model.safetensors");
  fs::copy_file(ckpt / "optimizer.pt", ckpt / "pytorch_model.bin");
  try {
    open_checkpoint(ckpt);
    FAIL() << "a folder without safetensors was opened";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((ckpt / "pytorch_model.bin").string() + ": a PyTorch torch.save"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace wsm
