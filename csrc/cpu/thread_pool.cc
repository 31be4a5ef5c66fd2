#include "thread_pool.h"

#include <sched.h>

#include <cstdlib>

namespace ss::cpu {

int defaultThreadCount() {
  if (const char *env = std::getenv("SELECTIVE_SCAN_NUM_THREADS")) {
    char *end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0 && n <= 4096) return int(n);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

ThreadPool &ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() { start(defaultThreadCount() - 1); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int workers) {
  quit_ = false;
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { workerLoop(i + 1); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  for (auto &t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::setThreads(int n) {
  std::lock_guard<std::mutex> call(callMutex_);
  if (n == threads()) return;
  stop();
  start(n - 1);
}

void ThreadPool::runTasks(int worker) {
  for (;;) {
    int64_t task;
    const std::function<void(int64_t, int)> *job;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (nextTask_ >= jobCount_ || error_) return;
      task = nextTask_++;
      job = job_;
    }
    try {
      (*job)(task, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::workerLoop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      ++activeWorkers_;
    }
    runTasks(worker);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --activeWorkers_;
    }
    done_.notify_all();
  }
}

void ThreadPool::parallelFor(int64_t count, const std::function<void(int64_t, int)> &fn) {
  if (count <= 0) return;
  std::lock_guard<std::mutex> call(callMutex_);
  if (count == 1 || workers_.empty()) {
    for (int64_t i = 0; i < count; ++i) fn(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    jobCount_ = count;
    nextTask_ = 0;
    error_ = nullptr;
    ++generation_;
  }
  wake_.notify_all();
  runTasks(0);
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    // Every task has been handed out; wait until the workers holding one have finished it.
    done_.wait(lock, [&] { return activeWorkers_ == 0; });
    job_ = nullptr;
    jobCount_ = 0;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace ss::cpu
