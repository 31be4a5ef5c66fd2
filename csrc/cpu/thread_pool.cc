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

// One polite busy-wait step: lets the sibling hyperthread run and saves power.
inline void cpuRelax() {
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

bool isOpen(uint64_t generation) { return generation % 2 == 0; }

}  // namespace

int ThreadPool::start(int workers) {
  quit_ = false;
  try {
    for (int i = 0; i < workers; ++i) workers_.emplace_back([this, i] { workerLoop(i + 1); });
  } catch (const std::system_error &) {
    // Out of threads (a process or container limit): keep those that started.
  }
  threads_ = int(workers_.size()) + 1;
  ranges_.reset(new TaskRange[size_t(threads_)]);
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

void ThreadPool::runTasks(int worker) {
  const auto *job = job_;
  const int threads = threads_.load(std::memory_order_relaxed);
  for (int i = 0; i < threads; ++i) {  // its own range first, then the others' in turn
    TaskRange &range = ranges_[size_t((worker + i) % threads)];
    // Where the op keeps affinity, another thread's range is taken over only if its owner has not
    // begun it (asleep, descheduled, or not yet awake): never a few tasks from the end of a range
    // whose owner is running it, which would move their state to this core and back next call.
    if (i > 0 && keepAffinity_ && range.next.load(std::memory_order_relaxed) != range.begin) continue;
    while (!failed_.load(std::memory_order_relaxed)) {
      const int64_t task = range.next.fetch_add(1, std::memory_order_relaxed);
      if (task >= range.end) break;
      try {
        (*job)(task, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(sleepMutex_);
        if (!error_) error_ = std::current_exception();
        failed_ = true;
      }
    }
  }
}

void ThreadPool::waitUntilIdle() const {
  for (int spins = 0; busy_.load() != 0; ++spins) {
    if (spins < 4096)
      cpuRelax();
    else
      std::this_thread::yield();  // a worker holds a long task, or the cores are oversubscribed
  }
}

// The generation is odd while no job is open and even while one is. A worker joins a job only if
// the generation it read before busy_ += 1 is still the one it reads after: then the caller, which
// closes the job (odd) before it waits for busy_ == 0, is sure to see it (both are seq_cst).
void ThreadPool::workerLoop(int worker) {
  uint64_t seen = 0;
  auto jobToJoin = [&] {
    const uint64_t g = generation_.load();
    return isOpen(g) && g != seen ? g : 0;
  };
  for (;;) {
    uint64_t g = 0;
    const auto spinUntil = std::chrono::steady_clock::now() + kSpin;
    for (int spins = 0; !quit_.load(std::memory_order_relaxed) && (g = jobToJoin()) == 0; ++spins) {
      cpuRelax();
      if (spins % 64 == 63 && std::chrono::steady_clock::now() > spinUntil) {
        std::unique_lock<std::mutex> lock(sleepMutex_);
        sleepers_ += 1;
        wake_.wait(lock, [&] { return quit_.load() || (g = jobToJoin()) != 0; });
        sleepers_ -= 1;
        break;
      }
    }
    if (quit_) return;
    busy_ += 1;
    if (generation_.load() == g) {
      seen = g;
      runTasks(worker);
    }
    busy_ -= 1;
  }
}

// Runs inside a Session, which holds sessionMutex_: one job at a time, and no job is open here.
void ThreadPool::parallelFor(int64_t count, const std::function<void(int64_t, int)> &fn, Balance balance) {
  if (count <= 0) return;
  if (count == 1 || workers_.empty()) {
    for (int64_t i = 0; i < count; ++i) fn(i, 0);
    return;
  }
  job_ = &fn;
  keepAffinity_ = balance == Balance::KeepAffinity;
  const int threads = this->threads();
  for (int w = 0; w < threads; ++w) {
    TaskRange &range = ranges_[size_t(w)];
    range.begin = count / threads * w + std::min<int64_t>(count % threads, w);
    range.end = count / threads * (w + 1) + std::min<int64_t>(count % threads, w + 1);
    range.next.store(range.begin, std::memory_order_relaxed);
  }
  failed_ = false;
  error_ = nullptr;
  const uint64_t open = generation_.load() + 1;
  generation_ = open;  // publishes the job
  if (sleepers_.load() > 0) {
    {
      std::lock_guard<std::mutex> lock(sleepMutex_);
    }
    wake_.notify_all();
  }
  runTasks(0);
  generation_ = open + 1;  // closed: no worker joins from here on
  waitUntilIdle();         // the workers that joined finish their last task
  job_ = nullptr;
  const std::exception_ptr error = std::exchange(error_, nullptr);
  if (error) std::rethrow_exception(error);
}

}  // namespace ss::cpu
