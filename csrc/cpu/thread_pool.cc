#include "thread_pool.h"

#include <sched.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

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

namespace {

// One step of a busy wait. The first steps only pause (lets the sibling hyperthread run), which
// sees the awaited change within a fraction of a microsecond; later ones yield the core, which
// costs a system call but lets the other threads run on a machine with more runnable threads than
// cores: a spinning worker there took time slices from the JavaScript thread of its own process
// (measured under a parallel build: the 90th percentile of the batch-1 step went from 0.09 to
// 0.3 ms).
inline void waitStep(int spins) {
  if (spins >= 256) {
    std::this_thread::yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long an idle worker polls for the next job before it sleeps. Long enough to span the gap
// between two ops of a decoding or training loop (JavaScript in between), short enough that an
// idle process stops burning its cores at once.
constexpr auto kSpin = std::chrono::microseconds(200);

// How long a range's owner may go without taking its next task before, under KeepAffinity, a
// thread that has finished takes the rest: far above a task of the steps (a few microseconds), far
// below a scheduler time slice (milliseconds), which is what a stall means.
constexpr auto kStall = std::chrono::microseconds(30);

}  // namespace

int ThreadPool::start(int workers) {
  quit_ = false;
  ranges_.reset(new TaskRange[size_t(workers) + 1]);  // before any worker runs
  try {
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { workerLoop(i + 1); });
  } catch (const std::system_error &) {
    // Out of threads (a process or container limit): keep those that started.
  }
  threads_ = int(workers_.size()) + 1;
  return int(workers_.size());
}

void ThreadPool::stop() {
  quit_ = true;
  {
    std::lock_guard<std::mutex> lock(sleepMutex_);
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

namespace {

uint64_t tagged(uint32_t job, uint32_t index) { return uint64_t(job) << 32 | index; }
uint32_t jobOf(uint64_t word) { return uint32_t(word >> 32); }
uint32_t indexOf(uint64_t word) { return uint32_t(word); }

}  // namespace

bool ThreadPool::takeTask(TaskRange &range, uint32_t job, uint32_t &task) {
  uint64_t next = range.next.load(std::memory_order_acquire);
  for (;;) {
    const uint64_t end = range.end.load(std::memory_order_acquire);
    if (jobOf(next) != job || jobOf(end) != job || indexOf(next) >= indexOf(end)) return false;
    if (range.next.compare_exchange_weak(next, next + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      task = indexOf(next);
      return true;
    }
  }
}

// KeepAffinity: whether this thread should run what is left of another thread's range: yes if its
// owner has not begun it, or has taken no task for kStall (it lost its core to another process:
// waiting for it would cost a scheduler time slice); no once the range is done.
bool ThreadPool::ownerIsAway(const TaskRange &range, uint32_t job) {
  uint64_t seen = range.next.load(std::memory_order_acquire);
  const uint64_t begin = range.begin.load(std::memory_order_acquire), end = range.end.load(std::memory_order_acquire);
  if (jobOf(seen) != job || jobOf(end) != job) return false;  // the job is over
  if (seen == begin) return true;
  auto deadline = std::chrono::steady_clock::now() + kStall;
  for (int spins = 0; jobOf(seen) == job && indexOf(seen) < indexOf(end); ++spins) {
    waitStep(spins);
    const uint64_t next = range.next.load(std::memory_order_acquire);
    if (next != seen) {
      seen = next;
      deadline = std::chrono::steady_clock::now() + kStall;
    } else if (spins % 16 == 15 && std::chrono::steady_clock::now() > deadline) {
      return true;
    }
  }
  return false;
}

void ThreadPool::runTasks(int worker, uint32_t job) {
  const int threads = threads_.load(std::memory_order_relaxed);
  const bool keepAffinity = keepAffinity_.load(std::memory_order_relaxed);
  for (int i = 0; i < threads; ++i) {  // its own range first, then the others' in turn
    TaskRange &range = ranges_[size_t((worker + i) % threads)];
    if (i > 0 && keepAffinity && !ownerIsAway(range, job)) continue;
    int64_t ran = 0;
    uint32_t task;
    while (!failed_.load(std::memory_order_relaxed) && takeTask(range, job, task)) {
      try {
        (*job_)(jobOffset_ + task, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(sleepMutex_);
        if (!error_) error_ = std::current_exception();
        failed_ = true;
      }
      ++ran;
    }
    if (ran) tasksDone_.fetch_add(ran, std::memory_order_release);  // before this thread may stall
  }
}

void ThreadPool::workerLoop(int worker) {
  uint64_t seen = generation_.load();
  auto newJob = [&] { return generation_.load() != seen; };
  for (;;) {
    const auto spinUntil = std::chrono::steady_clock::now() + kSpin;
    for (int spins = 0; !quit_.load(std::memory_order_relaxed) && !newJob(); ++spins) {
      waitStep(spins);
      if (spins % 64 == 63 && std::chrono::steady_clock::now() > spinUntil) {
        std::unique_lock<std::mutex> lock(sleepMutex_);
        sleepers_ += 1;  // seq_cst, as the caller's store of generation_ and load of sleepers_
        wake_.wait(lock, [&] { return quit_.load() || newJob(); });
        sleepers_ -= 1;
        break;
      }
    }
    if (quit_) return;
    seen = generation_.load();
    runTasks(worker, uint32_t(seen));
  }
}

// Runs inside a Session, which holds sessionMutex_: one job at a time.
void ThreadPool::parallelFor(int64_t count, const std::function<void(int64_t, int)> &fn, Balance balance) {
  if (count <= 0) return;
  if (count == 1 || workers_.empty()) {
    for (int64_t i = 0; i < count; ++i) fn(i, 0);
    return;
  }
  job_ = &fn;
  keepAffinity_ = balance == Balance::KeepAffinity;
  constexpr int64_t kMaxJob = int64_t(1) << 31;
  for (int64_t offset = 0; offset < count; offset += kMaxJob) {
    // Job numbers run 1, 2, ..., 2^32 - 1, 1, ...: a worker would have to sleep through four
    // billion jobs to meet its number again.
    uint32_t job = uint32_t(generation_.load() + 1);
    if (job == 0) job = 1;
    runJob(job, offset, uint32_t(std::min(kMaxJob, count - offset)));
  }
  job_ = nullptr;
}

void ThreadPool::runJob(uint32_t job, int64_t offset, uint32_t count) {
  jobOffset_ = offset;
  failed_ = false;
  error_ = nullptr;
  tasksDone_.store(0, std::memory_order_relaxed);
  const int threads = this->threads();
  for (int w = 0; w < threads; ++w) {
    TaskRange &range = ranges_[size_t(w)];
    const uint32_t begin = count / threads * w + std::min<uint32_t>(count % threads, w);
    const uint32_t end = count / threads * (w + 1) + std::min<uint32_t>(count % threads, w + 1);
    range.end.store(tagged(job, end), std::memory_order_release);  // before next: see TaskRange
    range.begin.store(tagged(job, begin), std::memory_order_release);
    range.next.store(tagged(job, begin), std::memory_order_release);
  }
  generation_ = job;  // publishes the job
  if (sleepers_.load() > 0) {
    {
      std::lock_guard<std::mutex> lock(sleepMutex_);
    }
    wake_.notify_all();
  }
  runTasks(0, job);
  if (failed_) {  // nobody takes the tasks left: count them as done
    for (int w = 0; w < threads; ++w) {
      TaskRange &range = ranges_[size_t(w)];
      uint64_t next = range.next.load(std::memory_order_acquire);
      const uint64_t end = range.end.load(std::memory_order_acquire);
      while (indexOf(next) < indexOf(end) && !range.next.compare_exchange_weak(next, end)) {
      }
      if (indexOf(next) < indexOf(end)) tasksDone_.fetch_add(indexOf(end) - indexOf(next));
    }
  }
  // Wait for the tasks that other threads hold.
  for (int spins = 0; tasksDone_.load(std::memory_order_acquire) < count; ++spins) waitStep(spins);
  const std::exception_ptr error = std::exchange(error_, nullptr);
  if (error) std::rethrow_exception(error);
}

}  // namespace ss::cpu
