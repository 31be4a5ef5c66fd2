// A fixed pool of worker threads for the CPU backend. parallelFor gives each thread a contiguous
// range of the task indices and lets a thread that finishes its own take over what is left of the
// others'; results never depend on which thread ran a task, because every op decides its task
// decomposition from the shape alone and keeps each task's sums in a fixed order.
//
// Made for ops of a few microseconds (a decoding step) as much as for long ones: an idle worker
// polls for the next job for a while before it sleeps (yielding its core to any other runnable
// thread), a task is taken with one compare-and-swap (no lock), the same thread gets the same range
// from one call to the next, and the caller waits for the job's tasks, not for the threads.
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
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ss::cpu {

class ThreadPool {
 public:
  static ThreadPool &instance();
  ~ThreadPool();

  // How a thread that has run its own range helps the others.
  //  Dynamic: it takes the tasks they have not taken yet, to the last one: for ops whose tasks
  //    differ in cost (packed sequences) or whose data does not stay in the cache anyway.
  //  KeepAffinity: it takes over a range only if that range's owner has not begun it, or has taken
  //    no task for 30 us (descheduled: another process has its core). For ops that
  //    update in place a state that fits in the caches (the decoding steps): a task taken from the
  //    end of a running range moves its state to another core, and back at the next call, which
  //    cost more than the imbalance it saves (the batch-1 Mamba-2 step at 2 threads, alternating
  //    runs: a median 47-50 us a call with affinity kept, 56-59 us without).
  enum class Balance { Dynamic, KeepAffinity };

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
    void parallelFor(int64_t count, const std::function<void(int64_t task, int worker)> &fn,
                     Balance balance = Balance::Dynamic) {
      pool_.parallelFor(count, fn, balance);
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
  void parallelFor(int64_t count, const std::function<void(int64_t, int)> &fn, Balance balance);
  void runJob(uint32_t job, int64_t offset, uint32_t count);
  void runTasks(int worker, uint32_t job);

  std::vector<std::thread> workers_;
  std::atomic<int> threads_{1};
  std::mutex sessionMutex_;  // held by the open session, and by setThreads

  // Each thread's share of a job's tasks: a contiguous range, the same for the same count from one
  // call to the next, so that the state a decoding loop updates in place stays in the cache of the
  // core that updated it last (handing tasks out from one shared counter moved half of it to the
  // other core at every call). Every word carries the job's number in its high 32 bits, so that a
  // worker that wakes late, after its job is over, can take nothing from the next one: a task is
  // taken by compare-and-swap on `next` from (job, i) to (job, i + 1) with i below the same job's
  // `end`. The caller writes `end` before `next`, and waits for the job's tasks, never for threads:
  // a worker that lost its core while holding no task does not hold the op up.
  struct alignas(64) TaskRange {
    std::atomic<uint64_t> next{0}, begin{0}, end{0};  // (job << 32) | task index
  };
  static bool takeTask(TaskRange &range, uint32_t job, uint32_t &task);
  static bool ownerIsAway(const TaskRange &range, uint32_t job);

  // The job being run: written by the caller before it publishes the job's number in generation_,
  // read by a worker only once it holds one of the job's tasks (so the job is not over).
  const std::function<void(int64_t, int)> *job_ = nullptr;
  int64_t jobOffset_ = 0;                            // jobs hold at most 2^31 tasks: fn(offset + task)
  std::unique_ptr<TaskRange[]> ranges_;              // threads() of them
  std::atomic<bool> keepAffinity_{false};            // the job's Balance
  alignas(64) std::atomic<uint64_t> generation_{0};  // the number of the latest job
  alignas(64) std::atomic<int64_t> tasksDone_{0};    // of the running job; the caller waits for all
  std::atomic<bool> failed_{false};                  // a task threw: take no more tasks
  std::atomic<bool> quit_{false};

  // Sleeping: a worker polls generation_ for kSpin (thread_pool.cc) after its last job (ops in a
  // loop follow each other within microseconds, and a futex wake-up costs tens of them), then
  // sleeps on wake_. The caller notifies only when sleepers_ says someone sleeps.
  std::mutex sleepMutex_;  // guards wake_ and error_
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
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
