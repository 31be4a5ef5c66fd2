#include "cpu_backend.h"

#include <atomic>
#include <chrono>
#include <vector>

#include "host_allocator.h"
#include "thread_pool.h"

namespace ss::cpu {

const char *activeIsaName() { return isaName(activeIsa()); }
int threadCount() { return ThreadPool::instance().threads(); }
void setThreadCount(int n) { ThreadPool::instance().setThreads(n); }

std::vector<std::string> takeEnvironmentWarnings() {
  static std::atomic<bool> taken{false};
  std::vector<std::string> warnings;
  if (taken.exchange(true)) return warnings;
  for (const std::string *w :
       {&defaultThreadCount().warning, &activeIsaSetting().warning, &defaultHostCacheLimit().warning})
    if (!w->empty()) warnings.push_back(*w);
  return warnings;
}

double measureExp2Rate() {
  ThreadPool::Session pool;
  constexpr int64_t kPerThread = int64_t(1) << 26;
  const int threads = pool.threads();
  std::vector<float> sink(static_cast<size_t>(threads));
  auto run = [&] { pool.parallelFor(threads, [&](int64_t task, int) { sink[size_t(task)] = exp2Work(kPerThread); }); };
  run();  // warm up
  const auto start = std::chrono::steady_clock::now();
  run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  volatile float keep = sink[0];
  (void)keep;
  return double(kPerThread) * threads / seconds;
}

}  // namespace ss::cpu
