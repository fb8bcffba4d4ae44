#include "wsm/core/version.h"

#ifndef WSM_VERSION
#error "WSM_VERSION is set by protocol/CMakeLists.txt from project(VERSION)"
#endif

namespace wsm {

std::string_view wsm_version() { return WSM_VERSION; }

}  // namespace wsm
