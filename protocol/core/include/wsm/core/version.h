#pragma once
// The wsm version, from the top-level CMakeLists.txt's project(VERSION): recorded in every output's
// provenance, in status replies and by `wsm --version`.
#include <string_view>

namespace wsm {

std::string_view wsm_version();

}  // namespace wsm
