#include "host_allocator.h"

#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace ss::cpu {

namespace {

std::string mebibytes(uint64_t bytes) {
  return bytes % (1 << 20) == 0 ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes) + " bytes";
}

// The cache: blocks by size class, and all of them in the order they were released (to free the
// oldest first when the limit is reached). Guarded by `mutex`.
struct Cache {
  std::mutex mutex;
  std::list<HostBlock> byAge;  // newest first
  // The blocks of each size class, as positions in byAge, oldest first.
  std::unordered_map<size_t, std::deque<std::list<HostBlock>::iterator>> byClass;
  uint64_t limit = defaultHostCacheLimit().bytes;
  uint64_t cached = 0, allocated = 0, peak = 0, hits = 0, misses = 0;

  // Takes a cached block of this class out of the cache; false if there is none.
  bool take(size_t capacity, HostBlock &block) {
    auto found = byClass.find(capacity);
    if (found == byClass.end()) return false;
    auto position = found->second.back();  // the newest: its pages are the likeliest to be in cache
    found->second.pop_back();
    if (found->second.empty()) byClass.erase(found);
    block = *position;
    byAge.erase(position);
    cached -= capacity;
    return true;
  }

  // Removes the block released longest ago from the cache and returns it (to be freed).
  HostBlock evictOldest() {
    const HostBlock block = byAge.back();
    auto found = byClass.find(block.capacity);
    found->second.pop_front();  // the oldest of its class is the oldest of all
    if (found->second.empty()) byClass.erase(found);
    byAge.pop_back();
    cached -= block.capacity;
    return block;
  }

  // Evicts until `extra` more bytes fit under the limit; the evicted blocks go to `freed`.
  void makeRoom(uint64_t extra, std::vector<void *> &freed) {
    while (!byAge.empty() && cached + extra > limit) freed.push_back(evictOldest().data);
  }

  void noteAllocated(size_t capacity) {
    allocated += capacity;
    if (allocated > peak) peak = allocated;
  }
};

// Never destroyed: blocks may be released while the process exits (a finalizer, a worker thread).
Cache &cache() {
  static Cache *c = new Cache();
  return *c;
}

void freeAll(const std::vector<void *> &blocks) {
  for (void *p : blocks) std::free(p);
}

}  // namespace

size_t hostSizeClass(size_t bytes) {
  if (bytes <= kHostAlignment) return kHostAlignment;
  // Four classes per power of two: steps of a quarter of the largest power of two below `bytes`.
  size_t top = size_t(1) << (63 - __builtin_clzll(uint64_t(bytes)));
  const size_t step = top / 4 > kHostAlignment ? top / 4 : kHostAlignment;
  return (bytes + step - 1) / step * step;
}

HostBlock hostAllocate(size_t bytes) {
  if (uint64_t(bytes) > kMaxHostBytes) throw std::bad_alloc();
  const size_t capacity = hostSizeClass(bytes);
  Cache &c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    HostBlock block;
    if (c.take(capacity, block)) {
      ++c.hits;
      c.noteAllocated(capacity);
      return block;
    }
    ++c.misses;
  }
  void *p = std::aligned_alloc(kHostAlignment, capacity);
  if (!p) {  // the cached blocks of other classes may be what is missing
    emptyHostCache();
    p = std::aligned_alloc(kHostAlignment, capacity);
    if (!p) throw std::bad_alloc();
  }
  std::lock_guard<std::mutex> lock(c.mutex);
  c.noteAllocated(capacity);
  return {p, capacity};
}

void hostRelease(HostBlock block) noexcept {
  if (!block.data) return;
  Cache &c = cache();
  std::vector<void *> freed;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.allocated -= block.capacity;
    if (block.capacity > c.limit) {
      freed.push_back(block.data);
    } else {
      try {
        c.makeRoom(block.capacity, freed);
        c.byAge.push_front(block);
        c.byClass[block.capacity].push_back(c.byAge.begin());
        c.cached += block.capacity;
      } catch (const std::bad_alloc &) {  // no memory for the bookkeeping: free the block instead
        if (!c.byAge.empty() && c.byAge.front().data == block.data) {
          c.byAge.pop_front();
        }
        freed.push_back(block.data);
      }
    }
  }
  freeAll(freed);
}

void setHostCacheLimit(size_t bytes) {
  Cache &c = cache();
  std::vector<void *> freed;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.limit = bytes;
    c.makeRoom(0, freed);
  }
  freeAll(freed);
}

void emptyHostCache() {
  Cache &c = cache();
  std::vector<void *> freed;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    while (!c.byAge.empty()) freed.push_back(c.evictOldest().data);
  }
  freeAll(freed);
}

HostMemoryInfo hostMemoryInfo() {
  Cache &c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {c.allocated, c.peak, c.cached, c.limit, c.hits, c.misses};
}

HostCacheLimitSetting hostCacheLimitSetting(const char *value) {
  if (value == nullptr || *value == '\0') return {kDefaultHostCacheLimit, ""};
  // Digits (at most 16, so that nothing wraps), then at most one of K, M, G.
  const size_t length = std::strlen(value);
  size_t digits = 0;
  while (digits < length && value[digits] >= '0' && value[digits] <= '9') ++digits;
  uint64_t shift = 0;
  bool valid = digits >= 1 && digits <= 16 && length - digits <= 1;
  if (valid && length - digits == 1) {
    switch (value[digits]) {
      case 'k':
      case 'K': shift = 10; break;
      case 'm':
      case 'M': shift = 20; break;
      case 'g':
      case 'G': shift = 30; break;
      default: valid = false;
    }
  }
  if (valid) {
    const uint64_t n = std::strtoull(value, nullptr, 10);
    if (n <= (kMaxHostBytes >> shift)) return {size_t(n << shift), ""};
  }
  return {kDefaultHostCacheLimit, "SELECTIVE_SCAN_HOST_CACHE_LIMIT='" + std::string(value).substr(0, 40) +
                                      "' is not a byte count (an integer, optionally with K, M or G) of at most 2^50; "
                                      "using the default, " +
                                      mebibytes(kDefaultHostCacheLimit)};
}

const HostCacheLimitSetting &defaultHostCacheLimit() {
  static const HostCacheLimitSetting setting = hostCacheLimitSetting(std::getenv("SELECTIVE_SCAN_HOST_CACHE_LIMIT"));
  return setting;
}

}  // namespace ss::cpu
