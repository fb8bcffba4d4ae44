#pragma once
// Test support: runs a command line (usually the built `wsm`, as a user would) and captures its exit
// code, stdout and stderr.
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

namespace wsm::test {

struct CommandResult {
  int rc = -1;      // exit code; -1 when killed by a signal or not run
  std::string out;  // stdout
  std::string err;  // stderr
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline CommandResult run_command(const std::string& command) {
  // popen pipes stdout only: stderr goes through a temporary file.
  std::string err_path = (std::filesystem::temp_directory_path() / "wsm-test-stderr-XXXXXX").string();
  const int fd = ::mkstemp(err_path.data());
  if (fd < 0) return {};
  ::close(fd);
  CommandResult r;
  const std::string full = command + " 2>'" + err_path + "'";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(full.c_str(), "r"), ::pclose);
  if (pipe) {
    std::array<char, 4096> buf{};
    while (const std::size_t n = std::fread(buf.data(), 1, buf.size(), pipe.get())) r.out.append(buf.data(), n);
    const int status = ::pclose(pipe.release());
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  r.err = slurp(err_path);
  std::filesystem::remove(err_path);
  return r;
}

inline std::filesystem::path wsm_binary() { return std::filesystem::path(WSM_BINARY_DIR) / "wsm"; }

inline CommandResult run_wsm(const std::string& args) {
  std::string command(1, '\'');  // appended piecewise: GCC 12 warns falsely (-Wrestrict) on "'" + s
  command.append(wsm_binary().string()).append("' ").append(args);
  return run_command(command);
}

}  // namespace wsm::test
