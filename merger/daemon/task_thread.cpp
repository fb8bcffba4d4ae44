#include "merger/daemon/task_thread.h"

#include <spdlog/spdlog.h>

namespace wsm::merger {

TaskThread::TaskThread() : thread_([this](std::stop_token stop) { loop(stop); }) {}

TaskThread::~TaskThread() {
  thread_.request_stop();
  wake_.notify_all();
}

void TaskThread::post(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  wake_.notify_one();
}

void TaskThread::loop(std::stop_token stop) {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      if (!wake_.wait(lock, stop, [&] { return !tasks_.empty(); })) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {  // a task reports its own failures; this is the last guard
      spdlog::error("background task: {}", e.what());
    }
  }
}

}  // namespace wsm::merger
