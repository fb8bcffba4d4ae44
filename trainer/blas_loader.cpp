#include "trainer/blas_loader.h"

#include <dlfcn.h>

#include <string>

#include "wsm/core/error.h"

namespace wsm::trainer::cpu {
namespace {

// OpenBLAS (Debian's libopenblas0, the library the build checks for), then any BLAS that exports
// the CBLAS interface under the generic names.
constexpr const char* kCandidates[] = {"libopenblas.so.0", "libblas.so.3", "libcblas.so.3"};

Blas load() {
  std::string tried;
  auto note = [&](const std::string& why) { tried += (tried.empty() ? "" : "; ") + why; };
  for (const char* name : kCandidates) {
    void* lib = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* why = ::dlerror();
      note(why ? why : name);
      continue;
    }
    Blas b;
    b.sgemm = reinterpret_cast<decltype(b.sgemm)>(::dlsym(lib, "cblas_sgemm"));
    b.dgemm = reinterpret_cast<decltype(b.dgemm)>(::dlsym(lib, "cblas_dgemm"));
    if (!b.sgemm || !b.dgemm) {
      ::dlclose(lib);
      note(std::string(name) + ": no cblas_sgemm/cblas_dgemm");
      continue;
    }
    // The trainer's pool is the only source of threads: OpenBLAS runs one per call.
    if (auto set_threads = reinterpret_cast<void (*)(int)>(::dlsym(lib, "openblas_set_num_threads"))) set_threads(1);
    b.library = name;
    return b;  // the handle stays open: the function pointers live in it
  }
  throw Error("the CPU trainer needs a BLAS with the CBLAS interface and none could be loaded (" + tried +
              "); on Debian: apt-get install libopenblas0");
}

}  // namespace

const Blas& blas() {
  static const Blas b = load();
  return b;
}

}  // namespace wsm::trainer::cpu
