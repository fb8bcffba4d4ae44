// libFuzzer target for the HDF5 reader in its helper-process form (wsm/formats/hdf5_checkpoint.h):
// the input is written to a file, opened and read in full. libhdf5 runs in the forked helper (not
// instrumented: it is Debian's build), so the fuzzer covers what wsm's own process does with the
// helper's answers and the mapped bytes. One helper serves every input (a lease keeps it), as in a
// long-lived process; a crash or hang there ends that input in an error and the next input gets a
// fresh helper. Any outcome but success or a one-line wsm::Error naming the file is a bug: a crash,
// a hang, a sanitizer report, another exception.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "wsm/formats/checkpoint.h"
#include "wsm/formats/hdf5_checkpoint.h"
#include "tests/protocol/fuzz_scratch.h"

// A file libhdf5 parses takes about a millisecond in the helper; some corrupt ones make it loop
// until killed, and each costs this long (plus a fresh helper).
constexpr std::chrono::milliseconds kHelperTimeout{50};

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::filesystem::path file = [] {
    wsm::set_hdf5_helper_timeout(kHelperTimeout);
    return wsm::fuzz::scratch_dir() / "input.h5";
  }();
  static const wsm::Hdf5HelperLease lease = wsm::hold_hdf5_helper();  // one helper for every input
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
