// A fixed pool of worker threads for the CPU backend. parallelFor hands out task indices
// dynamically; results never depend on which thread ran a task, because every op decides its
// task decomposition from the shape alone and keeps each task's sums in a fixed order.
//
// An op holds the pool for its whole length through a ThreadPool::Session: one session at a time
// (ops from several JavaScript threads take turns), and the thread count cannot change while one
// is open (setThreads waits for it), so per-worker scratch sized with Session::threads() fits every
// worker index that the session's parallelFor calls hand out.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ss::cpu {

class ThreadPool {
 public:
  static ThreadPool &instance();
  ~ThreadPool();

  // The pool for the length of one op. Not reentrant: never open a session inside another, or
  // inside a task.
  class Session {
   public:
    Session() : Session(ThreadPool::instance()) {}
    explicit Session(ThreadPool &pool) : pool_(pool), lock_(pool.sessionMutex_) {}
    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;

    int threads() const { return pool_.threads(); }
    // Calls fn(task, worker) for every task in [0, count); worker in [0, threads()) identifies the
    // thread (for per-thread scratch). Returns when all tasks are done; rethrows the first
    // exception.
    void parallelFor(int64_t count, const std::function<void(int64_t task, int worker)> &fn) {
      pool_.parallelFor(count, fn);
    }

   private:
    ThreadPool &pool_;
    std::lock_guard<std::mutex> lock_;
  };

  int threads() const { return threads_.load(); }  // the caller works too
  // Waits for the open session, if any. Throws std::system_error when the system refuses to start
  // the threads; the pool then runs with as many as it could restore of the previous count.
  void setThreads(int n);

 private:
  ThreadPool();
  int start(int workers);  // the number of workers started
  void stop();
  void workerLoop(int worker);
  void runTasks(int worker);
  void parallelFor(int64_t count, const std::function<void(int64_t, int)> &fn);

  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  std::mutex sessionMutex_;  // held by the open session, and by setThreads
  std::mutex mutex_;         // guards everything below
  std::condition_variable wake_, done_;
  const std::function<void(int64_t, int)> *job_ = nullptr;
  int64_t jobCount_ = 0, nextTask_ = 0;
  int activeWorkers_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
  std::exception_ptr error_;
};

// The default thread count, from the environment variable SELECTIVE_SCAN_NUM_THREADS (null when
// unset or empty): an integer from 1 to kMaxThreads, or else `cores` with a warning that says why.
constexpr int kMaxThreads = 4096;
struct ThreadCountSetting {
  int threads;
  std::string warning;  // empty when the variable was unset or valid
};
ThreadCountSetting threadCountSetting(const char *value, int cores);

// The number of cores this process may run on (its affinity mask).
int availableCores();

// The default of this process: SELECTIVE_SCAN_NUM_THREADS as read once, at the first call.
const ThreadCountSetting &defaultThreadCount();

}  // namespace ss::cpu
