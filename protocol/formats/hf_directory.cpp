#include "wsm/formats/hf_directory.h"

#include <algorithm>
#include <array>
#include <string_view>
#include <system_error>

#include <fstream>
#include <map>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "wsm/formats/atomic_file.h"

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

std::string_view hf_dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::f64: return "float64";
    default: return {};
  }
}

std::optional<DType> dominant_float_dtype(const std::vector<TensorInfo>& tensors) {
  std::map<DType, std::uint64_t> bytes;
  for (const auto& t : tensors)
    if (is_float(t.dtype)) bytes[t.dtype] += t.nbytes();
  if (bytes.empty()) return std::nullopt;
  return std::max_element(bytes.begin(), bytes.end(), [](const auto& a, const auto& b) { return a.second < b.second; })->first;
}

namespace {

// config.json's dtype keys set to `dtype`: "torch_dtype" (transformers 4) and "dtype" (5), key order kept.
void set_config_dtype(const fs::path& config, DType dtype) {
  const std::string where = config.string();
  std::ifstream in(config, std::ios::binary);
  auto j = nlohmann::ordered_json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object (a Hugging Face config.json was expected)");
  const std::string name(hf_dtype_name(dtype));
  j["torch_dtype"] = name;
  j["dtype"] = name;
  write_file_atomic(config, j.dump(2) + "\n");
}

}  // namespace

bool write_hf_side_files(const fs::path& dir, const fs::path& hf_template, const std::map<std::string, std::string>& metadata,
                         const std::vector<TensorInfo>& tensors) {
  if (!hf_template.empty()) copy_hf_side_files(hf_template, dir);
  const fs::path config = dir / "config.json";
  if (!fs::exists(config)) {
    const auto sent = metadata.find(kHfConfigKey);
    if (sent == metadata.end()) return false;
    if (!nlohmann::json::accept(sent->second))
      throw Error(std::string("metadata '") + kHfConfigKey + "' is not JSON: cannot write " + config.string());
    write_file_atomic(config, sent->second);
  }
  if (const auto dtype = dominant_float_dtype(tensors)) set_config_dtype(config, *dtype);
  return true;
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
