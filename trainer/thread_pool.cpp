#include "trainer/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace wsm::trainer::cpu {
namespace {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    workers_.clear();  // joins
  }
  int size() const { return int(workers_.size()) + 1; }

  void run(int n, const std::function<void(int)>& body) {
    if (workers_.empty() || n <= 1) {
      for (int i = 0; i < n; ++i) body(i);
      return;
    }
    {
      std::lock_guard lock(mu_);
      body_ = &body;
      n_ = n;
      next_.store(0);
      busy_ = int(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return busy_ == 0; });  // every worker has left this job
  }

 private:
  void work() {
    for (int i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*body_)(i);
  }
  void worker() {
    std::uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      lock.unlock();
      work();
      lock.lock();
      if (--busy_ == 0) done_.notify_one();
    }
  }

  std::mutex mu_;  // guards body_, n_, busy_, generation_ and stop_ (next_ is atomic)
  std::condition_variable wake_, done_;
  const std::function<void(int)>* body_ = nullptr;  // the job: set under mu_, read by workers after waking
  int n_ = 0;
  std::atomic<int> next_{0};  // next task index to hand out
  int busy_ = 0;              // workers still inside the job
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  std::vector<std::jthread> workers_;
};

std::unique_ptr<ThreadPool>& pool() {
  static std::unique_ptr<ThreadPool> p = std::make_unique<ThreadPool>(1);
  return p;
}

}  // namespace

void parallel_for(int n, const std::function<void(int)>& body) { pool()->run(n, body); }

void set_pool_threads(int n) {
  n = std::max(1, n);
  if (pool()->size() != n) pool() = std::make_unique<ThreadPool>(n);
}

int pool_threads() { return pool()->size(); }

}  // namespace wsm::trainer::cpu
