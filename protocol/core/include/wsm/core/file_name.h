#pragma once
// One safe set for every name wsm turns into a file or folder name: run ids (merger/daemon/run_id.h,
// which refuses names outside it), offline output stems (merger::output_stem) and the daemon's
// emulation labels. The set is [A-Za-z0-9._-]: portable (POSIX's portable file-name set), never a
// path separator, and nothing a shell or a `key=value` parser reads specially (so no '=', which a
// shell takes as an assignment at the start of a command, and no ',' ':' '/' ' ').
#include <filesystem>
#include <string>
#include <string_view>

namespace wsm {

// Whether `c` is in the safe set.
constexpr bool is_file_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

// `text` with every byte outside the safe set replaced by '_' (many-to-one: callers that need an
// injective mapping, like run ids, refuse such names instead of rewriting them).
std::string file_name_safe(std::string_view text);

// The name of the folder `dir` names, as `basename` gives it: "run", "run/", "run/." and "./run//"
// all name "run" (a trailing slash is a common way to write a directory, never a new name).
std::string folder_name(const std::filesystem::path& dir);

}  // namespace wsm
