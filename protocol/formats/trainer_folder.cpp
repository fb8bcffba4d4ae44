#include "wsm/formats/trainer_folder.h"

#include <charconv>
#include <fstream>

#include <nlohmann/json.hpp>

#include "wsm/formats/checkpoint_name.h"
#include "wsm/core/error.h"

namespace wsm {
namespace fs = std::filesystem;
namespace {

std::optional<std::int64_t> parse_step(std::string_view digits) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || v < 0) return std::nullopt;
  return v;
}

// The folder a checkpoint lives in: the directory itself, or the file's (model.safetensors,
// model.safetensors.index.json) parent.
fs::path checkpoint_folder(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return path;
  return path.has_parent_path() ? path.parent_path() : fs::path(".");
}

// The learning rate trainer_state.json logged at `step` (log_history entries carry "step" and,
// for training logs, "learning_rate").
std::optional<double> logged_lr(const nlohmann::json& state, std::int64_t step) {
  const auto it = state.find("log_history");
  if (it == state.end() || !it->is_array()) return std::nullopt;
  for (auto e = it->rbegin(); e != it->rend(); ++e)
    if (e->is_object() && e->value("step", std::int64_t{-1}) == step && e->contains("learning_rate") &&
        (*e)["learning_rate"].is_number())
      return (*e)["learning_rate"].get<double>();
  return std::nullopt;
}

std::optional<LayoutPosition> from_trainer_state(const fs::path& folder) {
  const fs::path file = folder / "trainer_state.json";
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return std::nullopt;
  std::ifstream in(file);
  const auto state = nlohmann::json::parse(in, nullptr, false);
  if (state.is_discarded() || !state.is_object())
    throw Error(file.string() + ": not a JSON object (a Hugging Face Trainer writes one with global_step)");
  const auto step = state.find("global_step");
  if (step == state.end() || !step->is_number_integer() || step->get<std::int64_t>() < 0)
    throw Error(file.string() + ": no non-negative integer global_step");
  LayoutPosition p;
  p.step = step->get<std::int64_t>();
  p.source = "trainer_state.json";
  if (const auto t = state.find("num_input_tokens_seen"); t != state.end() && t->is_number_integer() &&
                                                          t->get<std::int64_t>() > 0)
    p.tokens = t->get<std::int64_t>();
  p.lr = logged_lr(state, *p.step);
  return p;
}

}  // namespace

LayoutPosition position_from_layout(const fs::path& path) {
  const fs::path folder = checkpoint_folder(path);
  if (auto p = from_trainer_state(folder)) return *p;
  LayoutPosition p;
  const std::string name = fs::absolute(folder).lexically_normal().filename().string();
  constexpr std::string_view prefix = "checkpoint-";
  if (name.starts_with(prefix)) {
    if ((p.step = parse_step(std::string_view(name).substr(prefix.size())))) p.source = "folder name";
    return p;
  }
  if ((p.step = step_from_file_name(path))) p.source = "file name";
  return p;
}

CheckpointArg parse_checkpoint_arg(const std::string& text) {
  const auto at = text.rfind('@');
  std::error_code ec;
  if (at == std::string::npos || at == 0 || fs::exists(text, ec)) return {text, std::nullopt};
  const auto step = parse_step(std::string_view(text).substr(at + 1));
  if (!step) return {text, std::nullopt};  // not PATH@STEP: opening it names what is missing
  return {text.substr(0, at), step};
}

}  // namespace wsm
