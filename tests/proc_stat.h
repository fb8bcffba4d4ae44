#pragma once
// /proc/PID/stat of a process, or "" once it is gone. A process can exit between listing /proc (or
// learning its pid) and reading the file; the read then fails with ESRCH, which libstdc++'s
// filebuf reports by throwing, so tests that look at other processes read through here.
#include <sys/types.h>

#include <exception>
#include <fstream>
#include <iterator>
#include <string>

namespace wsm::test {

inline std::string proc_stat(pid_t pid) {
  try {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    return std::string(std::istreambuf_iterator<char>(in), {});
  } catch (const std::exception&) {
    return "";
  }
}

}  // namespace wsm::test
