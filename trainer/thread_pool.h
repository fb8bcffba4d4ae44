#pragma once
// The CPU trainer's threads: a fixed set of std::jthreads that run the tasks of one parallel loop
// at a time, the calling thread working alongside. Idle threads sleep on a condition variable
// instead of spinning, and a free thread takes the next task whichever it is: on a machine that is
// busy with other work (OpenMP's default spin-waiting cost 9x the CPU time and 3-10x the wall time
// there), a preempted thread neither burns CPU nor holds its share of the work hostage.
// The caller cuts the work into tasks, never by the number of threads, so results do not depend on
// how many threads run them.
#include <functional>

namespace wsm::trainer::cpu {

// Runs body(i) for every i in [0, n) and returns when all have finished. body must not call
// parallel_for itself, and must not throw.
void parallel_for(int n, const std::function<void(int)>& body);

// Number of threads parallel_for uses, the caller included; 1 (the default) runs tasks in order on
// the calling thread. Not to be called while a parallel_for runs.
void set_pool_threads(int n);
int pool_threads();

}  // namespace wsm::trainer::cpu
