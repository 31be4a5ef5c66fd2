// The caching allocator of host memory: the bytes of every host tensor that the addon allocates,
// and the CPU kernels' per-worker scratch.
//
// Why a cache: a freed block goes back to the C library, which either unmaps it (large blocks: the
// next call maps fresh pages and pays a page fault per 4 KiB on first touch, which at
// (1, 2048, 4096) doubles the forward's time) or hands parts of it to small allocations that
// live on (then a block of the same size no longer fits there, and the heap grows with every
// call). Here a released block waits, whole, for the next request of its size class.
//
// Blocks are rounded up to size classes (four per power of two, so at most 25% is wasted) and
// aligned to kHostAlignment. The cache holds at most cacheLimit bytes (default 256 MiB, or the
// environment variable SELECTIVE_SCAN_HOST_CACHE_LIMIT; setHostCacheLimit changes it): releasing
// a block beyond the limit frees the blocks released longest ago first. Thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ss::cpu {

constexpr size_t kHostAlignment = 64;  // a cache line, and the widest vector
constexpr size_t kDefaultHostCacheLimit = size_t(256) << 20;
// The largest cache limit (and allocation) the allocator takes: 2^50 bytes.
constexpr uint64_t kMaxHostBytes = uint64_t(1) << 50;

struct HostBlock {
  void *data = nullptr;
  size_t capacity = 0;  // the size class: at least the bytes asked for
};

// A block of at least `bytes` (its contents undefined); throws std::bad_alloc when the system has
// no memory left even after the cache was emptied.
HostBlock hostAllocate(size_t bytes);
// Returns a block from hostAllocate to the cache (or to the system, beyond the cache's limit).
void hostRelease(HostBlock block) noexcept;

// The size class of a request: what hostAllocate(bytes).capacity will be.
size_t hostSizeClass(size_t bytes);

// Sets the cache's limit in bytes (0: no cache) and frees what no longer fits.
void setHostCacheLimit(size_t bytes);
// Frees every cached block.
void emptyHostCache();

struct HostMemoryInfo {
  uint64_t allocatedBytes;      // held by live blocks (tensors and scratch), in size classes
  uint64_t peakAllocatedBytes;  // the most allocatedBytes has been
  uint64_t cachedBytes;         // held by the cache for reuse
  uint64_t cacheLimitBytes;
  uint64_t cacheHits;    // requests served from the cache
  uint64_t cacheMisses;  // requests that allocated from the system
};
HostMemoryInfo hostMemoryInfo();

// SELECTIVE_SCAN_HOST_CACHE_LIMIT (null when unset or empty): bytes as a decimal integer, with an
// optional K, M or G suffix (KiB, MiB, GiB), at most kMaxHostBytes; else the default, with a
// warning that says why.
struct HostCacheLimitSetting {
  size_t bytes;
  std::string warning;  // empty when the variable was unset or valid
};
HostCacheLimitSetting hostCacheLimitSetting(const char *value);
// As read from the environment once, at the first call.
const HostCacheLimitSetting &defaultHostCacheLimit();

}  // namespace ss::cpu
