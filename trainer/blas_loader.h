#pragma once
// The BLAS the CPU trainer calls (cblas_sgemm when oneDNN is absent, cblas_dgemm), loaded with
// dlopen on first use instead of linked. A linked OpenBLAS starts a thread per core in every wsm
// process as it loads, and those spin in sched_yield for their first ~0.1 s: on a 2-core machine
// that took a core from the start of every `wsm merge`. Only the trainer needs a BLAS, and it runs
// it single-threaded (the loader sets OpenBLAS to one thread; the trainer's pool makes the threads).
#include <cblas.h>

namespace wsm::trainer::cpu {

struct Blas {
  decltype(&cblas_sgemm) sgemm = nullptr;
  decltype(&cblas_dgemm) dgemm = nullptr;
  const char* library = nullptr;  // the soname that was loaded
};

// Loads the BLAS once (thread-safe) and keeps it for the life of the process; throws wsm::Error
// naming every library tried when none loads.
const Blas& blas();

}  // namespace wsm::trainer::cpu
