#include "wsm/formats/hf_directory.h"

#include <algorithm>
#include <array>
#include <string_view>
#include <system_error>

#include <spdlog/spdlog.h>

#include "wsm/core/error.h"

namespace fs = std::filesystem;

namespace wsm {
namespace {

// Files transformers reads besides the weights (AutoConfig, GenerationConfig, AutoTokenizer,
// AutoProcessor). Listed, not "everything but weights", so optimizer.pt or a stray 10 GB file
// never rides along.
constexpr std::array<std::string_view, 16> kSideFileNames = {
    "config.json",           "generation_config.json", "tokenizer.json",        "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json",    "tokenizer.model",       "spiece.model",
    "sentencepiece.bpe.model", "vocab.json",           "vocab.txt",             "merges.txt",
    "chat_template.jinja",   "chat_template.json",     "preprocessor_config.json", "processor_config.json"};

bool is_side_file(const std::string& name) {
  if (std::find(kSideFileNames.begin(), kSideFileNames.end(), name) != kSideFileNames.end()) return true;
  // trust_remote_code models ship their classes beside the weights.
  return name.ends_with(".py") && (name.starts_with("configuration_") || name.starts_with("modeling_") ||
                                   name.starts_with("tokenization_") || name.starts_with("processing_"));
}

}  // namespace

bool is_hf_model_dir(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(dir / "config.json", ec);
}

std::vector<std::string> hf_side_files(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && is_side_file(e.path().filename().string())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void check_hf_template(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir.string() + ": not a directory (a Hugging Face model directory was expected)");
  if (!fs::is_regular_file(dir / "config.json", ec))
    throw Error(dir.string() + ": no config.json: not a Hugging Face model directory");
}

void copy_hf_side_files(const fs::path& from, const fs::path& to) {
  check_hf_template(from);
  const auto names = hf_side_files(from);
  for (const auto& name : names) {
    std::error_code ec;
    fs::copy_file(from / name, to / name, fs::copy_options::overwrite_existing, ec);
    if (ec) throw Error((from / name).string() + ": cannot copy into the model directory: " + ec.message());
  }
  std::string list;
  for (const auto& name : names) list += (list.empty() ? "" : ", ") + name;
  spdlog::debug("copied from {}: {}", from.string(), list);
}

std::unique_ptr<CheckpointWriter> create_hf_directory(const fs::path& dir, const CheckpointMeta& meta,
                                                      const std::vector<TensorInfo>& tensors,
                                                      const fs::path& hf_template, std::uint64_t shard_bytes) {
  WriteOptions o;
  o.shard_bytes = shard_bytes;
  o.hf_template = hf_template;
  return create_checkpoint(dir, meta, tensors, o);
}

}  // namespace wsm
