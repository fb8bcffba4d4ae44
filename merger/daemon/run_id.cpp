#include "merger/daemon/run_id.h"

#include "wsm/core/error.h"
#include "wsm/core/file_name.h"

namespace wsm::merger {

namespace {
bool alnum(char c) { return is_file_name_char(c) && c != '.' && c != '_' && c != '-'; }
}  // namespace

std::optional<std::string> run_id_problem(std::string_view run_id) {
  if (run_id.empty()) return "run id is empty";
  if (run_id.size() > kMaxRunIdBytes)
    return "run id of " + std::to_string(run_id.size()) + " bytes is longer than " + std::to_string(kMaxRunIdBytes);
  if (!alnum(run_id.front())) return "run id must start with a letter or digit";
  for (char c : run_id)
    if (!is_file_name_char(c))
      return "run id has a character outside [A-Za-z0-9._-] (byte " +
             std::to_string(static_cast<unsigned>(static_cast<unsigned char>(c))) + ")";
  if (run_id.find(".tmp-") != std::string_view::npos) return "run id must not contain '.tmp-'";
  return std::nullopt;
}

std::filesystem::path run_folder(const std::filesystem::path& base, const std::string& run_id) {
  if (auto problem = run_id_problem(run_id)) throw Error(*problem);
  return base / run_id;
}

}  // namespace wsm::merger
