// Scratch memory of the CPU kernels: one buffer per worker thread for the length of an op, carved
// into aligned arrays. Kernels describe their layout once (a constructor taking a Carver) and use
// it twice: with a null base to measure the bytes, then on each worker's buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "host_allocator.h"

namespace ss::cpu {

constexpr size_t kScratchAlignment = kHostAlignment;

// Carves one buffer (kScratchAlignment-aligned) into aligned arrays; with a null base it only
// measures, so that the size computation and the use share one description of the layout.
class Carver {
 public:
  explicit Carver(void *base) : base_(static_cast<char *>(base)) {}
  template <class T>
  T *take(int64_t count) {
    used_ = (used_ + kScratchAlignment - 1) & ~(kScratchAlignment - 1);
    T *p = base_ ? reinterpret_cast<T *>(base_ + used_) : nullptr;
    used_ += size_t(count) * sizeof(T);
    return p;
  }
  size_t bytes() const { return used_ + kScratchAlignment; }

 private:
  char *base_;
  size_t used_ = 0;
};

// The bytes of the layout that Layout's constructor carves (Layout(Carver &, args...)).
template <class Layout, class... Args>
size_t scratchBytes(Args &&...args) {
  Carver carver(nullptr);
  Layout layout(carver, std::forward<Args>(args)...);
  (void)layout;
  return carver.bytes();
}

// One buffer of `bytes` per worker (`workers` = the op's ThreadPool::Session::threads()), from the
// host allocator's cache: an op's scratch is the previous op's, without new pages to fault in.
class WorkerScratch {
 public:
  WorkerScratch(int workers, size_t bytes) {
    buffers_.reserve(size_t(workers));
    try {
      for (int i = 0; i < workers; ++i) buffers_.push_back(hostAllocate(bytes));
    } catch (...) {
      release();
      throw;
    }
  }
  ~WorkerScratch() { release(); }
  WorkerScratch(const WorkerScratch &) = delete;
  WorkerScratch &operator=(const WorkerScratch &) = delete;
  void *operator[](int worker) const { return buffers_[size_t(worker)].data; }

 private:
  void release() {
    for (const HostBlock &b : buffers_) hostRelease(b);
    buffers_.clear();
  }
  std::vector<HostBlock> buffers_;
};

// `count` zeroed elements of T for the length of an op (the partial sums an op finishes in a fixed
// order), from the host allocator's cache like WorkerScratch: as std::vectors they were fresh
// pages to fault in at every call (9 % of the selective scan's backward at S1-cpu).
template <class T>
class HostArray {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) <= kHostAlignment, "plain data only");

 public:
  explicit HostArray(int64_t count) : count_(count > 0 ? count : 0) {
    if (count_ == 0) return;
    block_ = hostAllocate(size_t(count_) * sizeof(T));
    std::memset(block_.data, 0, size_t(count_) * sizeof(T));
  }
  ~HostArray() {
    if (block_.data) hostRelease(block_);
  }
  HostArray(const HostArray &) = delete;
  HostArray &operator=(const HostArray &) = delete;

  T *data() const { return static_cast<T *>(block_.data); }  // null when empty
  bool empty() const { return count_ == 0; }
  T &operator[](size_t i) const { return data()[i]; }

 private:
  int64_t count_;
  HostBlock block_;
};

}  // namespace ss::cpu
