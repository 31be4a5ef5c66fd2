#include "thread_pool.h"

#include <sched.h>

#include <cstdlib>
#include <cstring>
#include <system_error>

namespace ss::cpu {

int availableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

ThreadCountSetting threadCountSetting(const char *value, int cores) {
  if (value == nullptr || *value == '\0') return {cores, ""};
  // Digits only (no sign, space or suffix), at most five of them, so that the value cannot wrap.
  const size_t length = std::strlen(value);
  bool digits = length <= 5;
  for (size_t i = 0; digits && i < length; ++i) digits = value[i] >= '0' && value[i] <= '9';
  const long n = digits ? std::strtol(value, nullptr, 10) : 0;
  if (n >= 1 && n <= kMaxThreads) return {int(n), ""};
  return {cores, "SELECTIVE_SCAN_NUM_THREADS='" + std::string(value).substr(0, 40) + "' is not an integer from 1 to " +
                     std::to_string(kMaxThreads) + "; using " + std::to_string(cores) +
                     " threads (the cores this process may run on)"};
}

const ThreadCountSetting &defaultThreadCount() {
  static const ThreadCountSetting setting =
      threadCountSetting(std::getenv("SELECTIVE_SCAN_NUM_THREADS"), availableCores());
  return setting;
}

ThreadPool &ThreadPool::instance() {
  static ThreadPool pool;
  return pool;
}

// Where the system refuses threads, the pool runs with those it could start (buildInfo() shows it).
ThreadPool::ThreadPool() { start(defaultThreadCount().threads - 1); }

ThreadPool::~ThreadPool() { stop(); }

int ThreadPool::start(int workers) {
  quit_ = false;
  try {
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { workerLoop(i + 1); });
  } catch (const std::system_error &) {
    // Out of threads (a process or container limit): keep those that started.
  }
  threads_ = int(workers_.size()) + 1;
  return int(workers_.size());
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_all();
  for (auto &t : workers_) t.join();
  workers_.clear();
  threads_ = 1;
}

void ThreadPool::setThreads(int n) {
  std::lock_guard<std::mutex> session(sessionMutex_);
  const int previous = threads();
  if (n == previous) return;
  stop();
  if (start(n - 1) == n - 1) return;
  const int started = threads();
  stop();
  start(previous - 1);
  throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                          "the system allowed only " + std::to_string(started) + " threads");
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

// Runs inside a Session, which holds sessionMutex_.
void ThreadPool::parallelFor(int64_t count, const std::function<void(int64_t, int)> &fn) {
  if (count <= 0) return;
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
