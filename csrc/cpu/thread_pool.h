// A fixed pool of worker threads for the CPU backend. parallelFor hands out task indices
// dynamically; results never depend on which thread ran a task, because every op decides its
// task decomposition from the shape alone and keeps each task's sums in a fixed order.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ss::cpu {

class ThreadPool {
 public:
  static ThreadPool &instance();
  ~ThreadPool();

  int threads() const { return int(workers_.size()) + 1; }  // the caller works too
  void setThreads(int n);

  // Calls fn(task, worker) for every task in [0, count); worker in [0, threads()) identifies the
  // thread (for per-thread scratch). Returns when all tasks are done; rethrows the first exception.
  void parallelFor(int64_t count, const std::function<void(int64_t task, int worker)> &fn);

 private:
  ThreadPool();
  void start(int workers);
  void stop();
  void workerLoop(int worker);
  void runTasks(int worker);

  std::vector<std::thread> workers_;
  std::mutex mutex_;      // guards everything below
  std::mutex callMutex_;  // one parallelFor at a time
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int)> *job_ = nullptr;
  int64_t jobCount_ = 0, nextTask_ = 0;
  int activeWorkers_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
  std::exception_ptr error_;
};

// The default thread count: SELECTIVE_SCAN_NUM_THREADS if set to a positive integer, else the
// number of cores this process may run on.
int defaultThreadCount();

}  // namespace ss::cpu
