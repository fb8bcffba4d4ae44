#include "wsm/formats/trainer_folder.h"

#include <charconv>
#include <cstdint>
#include <fstream>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

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

// What position_from_layout needs from trainer_state.json, read as a stream (nlohmann's SAX
// interface): a long run's file holds every log entry and can be hundreds of MB, which as a JSON
// tree cost ~10x its size. Kept: the top-level global_step and num_input_tokens_seen, and the
// (step, learning_rate) of log_history's entries (16 bytes each; only those of global_step once
// it is known, since a Trainer sorts keys and writes it first).
class TrainerStateReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool top_is_object = false, step_is_integer = false;
  std::optional<std::int64_t> global_step, tokens;
  std::vector<std::pair<std::int64_t, double>> logged;  // (step, learning_rate), file order

  // The learning rate logged last at global_step.
  std::optional<double> lr() const {
    for (auto it = logged.rbegin(); it != logged.rend(); ++it)
      if (global_step && it->first == *global_step) return it->second;
    return std::nullopt;
  }

  bool null() override { return value(std::nullopt, std::nullopt); }
  bool boolean(bool) override { return value(std::nullopt, std::nullopt); }
  bool number_integer(number_integer_t v) override { return value(std::int64_t(v), double(v)); }
  bool number_unsigned(number_unsigned_t v) override {
    return value(v <= std::uint64_t(INT64_MAX) ? std::optional<std::int64_t>(std::int64_t(v)) : std::nullopt, double(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return value(std::nullopt, double(v)); }
  bool string(string_t&) override { return value(std::nullopt, std::nullopt); }
  bool binary(binary_t&) override { return value(std::nullopt, std::nullopt); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) top_is_object = true;
    if (depth_ == 2 && in_log_) entry_step_.reset(), entry_lr_.reset();
    ++depth_;
    return true;
  }
  bool end_object() override {
    if (--depth_ == 2 && in_log_ && entry_step_ && entry_lr_ && (!global_step || *global_step == *entry_step_))
      logged.emplace_back(*entry_step_, *entry_lr_);
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 1) in_log_ = key_ == "log_history";
    ++depth_;
    return true;
  }
  bool end_array() override {
    if (--depth_ == 1) in_log_ = false;
    return true;
  }
  bool key(string_t& k) override {
    if (depth_ == 1 || (depth_ == 3 && in_log_)) key_ = k;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  // A value at the current depth: a top-level key's, or a log entry's.
  bool value(std::optional<std::int64_t> integer, std::optional<double> number) {
    if (depth_ == 1 && key_ == "global_step") {
      step_is_integer = integer && *integer >= 0;
      global_step = integer;
    } else if (depth_ == 1 && key_ == "num_input_tokens_seen") {
      tokens = integer;
    } else if (depth_ == 3 && in_log_ && key_ == "step") {
      entry_step_ = integer;
    } else if (depth_ == 3 && in_log_ && key_ == "learning_rate") {
      entry_lr_ = number;
    }
    return true;
  }
  int depth_ = 0;
  bool in_log_ = false;
  std::string key_;
  std::optional<std::int64_t> entry_step_;
  std::optional<double> entry_lr_;
};

std::optional<LayoutPosition> from_trainer_state(const fs::path& folder) {
  const fs::path file = folder / "trainer_state.json";
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return std::nullopt;
  std::ifstream in(file, std::ios::binary);
  TrainerStateReader state;
  if (!nlohmann::json::sax_parse(in, &state) || !state.top_is_object)
    throw Error(file.string() + ": not a JSON object (a Hugging Face Trainer writes one with global_step)");
  if (!state.step_is_integer) throw Error(file.string() + ": no non-negative integer global_step");
  LayoutPosition p;
  p.step = state.global_step;
  p.source = "trainer_state.json";
  if (state.tokens && *state.tokens > 0) p.tokens = state.tokens;
  p.lr = state.lr();
  return p;
}

std::optional<std::int64_t> step_of_folder_name(const fs::path& folder) {
  const std::string name = fs::absolute(folder).lexically_normal().filename().string();
  constexpr std::string_view prefix = "checkpoint-";
  if (!name.starts_with(prefix)) return std::nullopt;
  return parse_step(std::string_view(name).substr(prefix.size()));
}

}  // namespace

LayoutPosition position_from_layout(const fs::path& path) {
  const fs::path folder = checkpoint_folder(path);
  const auto named = step_of_folder_name(folder);
  if (auto p = from_trainer_state(folder)) {
    if (named && *named != *p->step)
      spdlog::warn("{}: trainer_state.json records global_step {} but the folder is named checkpoint-{}; using {} "
                   "(give PATH@STEP to choose another)",
                   folder.string(), *p->step, *named, *p->step);
    return *p;
  }
  LayoutPosition p;
  if (fs::absolute(folder).lexically_normal().filename().string().starts_with("checkpoint-")) {
    if ((p.step = named)) p.source = "folder name";
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
