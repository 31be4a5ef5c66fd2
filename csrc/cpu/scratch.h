// Scratch memory of the CPU kernels: one buffer per worker thread for the length of an op, carved
// into aligned arrays. Kernels describe their layout once (a constructor taking a Carver) and use
// it twice: with a null base to measure the bytes, then on each worker's buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace ss::cpu {

constexpr size_t kScratchAlignment = 64;  // a cache line, and the widest vector

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

// One buffer of `bytes` per worker (`workers` = the op's ThreadPool::Session::threads()).
class WorkerScratch {
 public:
  WorkerScratch(int workers, size_t bytes)
      : bytes_((bytes + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment) {
    for (int i = 0; i < workers; ++i) {
      void *p = std::aligned_alloc(kScratchAlignment, bytes_);
      if (!p) throw std::bad_alloc();
      buffers_.emplace_back(p, std::free);
    }
  }
  void *operator[](int worker) const { return buffers_[size_t(worker)].get(); }

 private:
  size_t bytes_;
  std::vector<std::unique_ptr<void, decltype(&std::free)>> buffers_;
};

}  // namespace ss::cpu
