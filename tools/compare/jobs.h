#pragma once
// Child processes for `wsm compare`: training runs and evaluation commands run as their own
// processes (each with its own threads and memory, killable, logged to a file), at most N at once,
// with their output lines handed to the caller for progress. Progress prints a bar with an ETA.
// Each job runs in a session of its own (setsid), so a time limit or a cancel kills its whole
// process group, children included. What a job prints costs bounded memory: the tail of stdout,
// the last line of stderr; everything goes to its log (stdout capped at kLogStdoutBytes).
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace wsm::tools::compare {

// The last bytes of a job's stdout kept in memory (JobResult::out), and the most of its stdout
// written to its log; stdout lines longer than kOutputTailBytes reach on_line cut to that length.
inline constexpr std::size_t kOutputTailBytes = 64u << 10;
inline constexpr std::uint64_t kLogStdoutBytes = 64ull << 20;

// Jobs that can be stopped from another thread: cancel() kills the process group of every job
// running under it, and of any started after (`wsm serve` at shutdown).
class JobControl {
 public:
  void cancel();
  bool cancelled() const;
  bool add(int pid);     // false when cancelled already (the caller kills it)
  void remove(int pid);  // before the job is reaped, so a pid reused later is never signalled

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::set<int> running_;
};

struct Job {
  std::string name;               // named in progress and errors
  std::vector<std::string> argv;  // argv[0] is the program (a path, or a name looked up in PATH)
  std::filesystem::path log;      // stdout and stderr are appended here
  std::chrono::milliseconds timeout{0};  // > 0: the job's process group is killed after this long
  JobControl* control = nullptr;          // optional: lets another thread cancel the job
};

struct JobResult {
  int exit_code = -1;      // -1: killed by a signal, timed out, cancelled or could not start
  std::string out;         // the last kOutputTailBytes the job wrote to stdout
  std::string last_error;  // the last non-empty line of stderr, or why the job was killed
  double seconds = 0;      // its wall time, start to exit
};

struct JobCallbacks {
  std::function<void(std::size_t, const std::string&)> on_line;  // (job index, stdout line)
  std::function<void(std::size_t, const JobResult&)> on_done;    // (job index, its result)
};

// Runs every job, at most `parallel` at once, and returns their results in order. Callbacks come
// from the workers' threads, one call at a time.
std::vector<JobResult> run_jobs(std::span<const Job> jobs, int parallel, const JobCallbacks& callbacks = {});

// This executable's own path, so jobs can run `wsm train` and `wsm eval` as separate processes.
std::filesystem::path self_executable();

// Work done out of a known total, shown on stderr: redrawn in place on a terminal, otherwise one
// line per tenth. Thread-safe.
class Progress {
 public:
  Progress(std::string label, double total, std::string unit);
  void advance(double amount);
  void finish();

 private:
  void print_locked(bool final_line);
  std::mutex mu_;  // guards every member below (progress is reported from several job threads)
  std::string label_, unit_;
  double total_, done_ = 0;
  int printed_tenths_ = -1;
  bool terminal_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace wsm::tools::compare
