#pragma once
// One worker thread running posted tasks in order: the daemon's step combinations
// (step_combiner.h) run here, so the message loop never waits for one. Destruction finishes the
// task running, drops the queued ones and joins.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace wsm::merger {

class TaskThread {
 public:
  TaskThread();
  ~TaskThread();
  TaskThread(const TaskThread&) = delete;
  TaskThread& operator=(const TaskThread&) = delete;

  void post(std::function<void()> task);

 private:
  void loop(std::stop_token stop);

  std::mutex mutex_;
  std::condition_variable_any wake_;
  std::deque<std::function<void()>> tasks_;
  std::jthread thread_;  // last: starts once the rest exists
};

}  // namespace wsm::merger
