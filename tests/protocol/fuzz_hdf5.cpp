// libFuzzer target for the HDF5 reader in its helper-process form (wsm/formats/hdf5_checkpoint.h):
// the input is written to a file, opened and read in full. libhdf5 runs in the forked helper (not
// instrumented: it is Debian's build), so the fuzzer covers what wsm's own process does with the
// helper's answers and the mapped bytes. Any outcome but success or a one-line wsm::Error naming
// the file is a bug: a crash, a hang, a sanitizer report, another exception.
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/hdf5_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path file = [] {
    wsm::set_hdf5_helper_timeout(std::chrono::seconds(2));  // a hang costs 2 s, not 60
    return std::filesystem::temp_directory_path() / ("wsm-fuzz-" + std::to_string(::getpid()) + ".h5");
  }();
  std::ofstream(file, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                 static_cast<std::streamsize>(size));
  try {
    auto r = wsm::open_hdf5(file);
    for (const auto& t : r->tensors()) {
      std::vector<std::byte> buf(std::min<std::uint64_t>(t.nbytes(), 1 << 16));
      r->read(t.name, 0, buf);
      if (auto m = r->mapped(t.name); m && m->size() != t.nbytes()) std::abort();
    }
  } catch (const wsm::Error& e) {
    const std::string msg = e.what();
    if (msg.find('\n') != std::string::npos || msg.find(file.string()) == std::string::npos) std::abort();
  }
  return 0;
}
