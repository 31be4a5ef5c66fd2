#include "cpu_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "scan_kernels.h"
#include "thread_pool.h"

namespace ss::cpu {
namespace {

// Time is processed in chunks of this many steps; the forward keeps the state at each chunk's
// end for the backward. Longer chunks mean fewer checkpoints (batch*dim*N floats per chunk) but a
// larger per-thread buffer in the backward (chunk*N*lanes floats of recomputed states).
constexpr int64_t kChunkLength = 256;

// A channel range shared by one B group and one C group (a "cell") is split into at most this
// many tasks, each a multiple of 16 channels (the widest SIMD block). The split depends on the
// shape only, so every sum over channels has the same order whatever the thread count; the
// backward keeps one partial dB/dC per task, so this also bounds that memory.
constexpr int64_t kMaxTasksPerCell = 16;
constexpr int64_t kTaskChannelMultiple = 16;

const Kernels &kernels() {
  static const Kernels *chosen = [] {
    const char *forced = std::getenv("SELECTIVE_SCAN_CPU_ISA");  // for tests: run a slower path
    std::vector<const Kernels *> usable = {&baseline::kernels};
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
      usable.push_back(&avx2::kernels);
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq"))
      usable.push_back(&avx512::kernels);
#endif
    if (forced) {
      for (const Kernels *k : usable)
        if (std::strcmp(k->isa, forced) == 0) return k;
    }
    return usable.back();
  }();
  return *chosen;
}

struct ChannelRange {
  int64_t d0, d1, groupB, groupC;
};

// The channel ranges of an op, in channel order (see kMaxTasksPerCell).
std::vector<ChannelRange> channelRanges(const ScanShape &shape, const Projection &B, const Projection &C) {
  const int64_t dim = shape.dim;
  const int64_t groupSizeB = B.varying() ? dim / B.groups : dim;
  const int64_t groupSizeC = C.varying() ? dim / C.groups : dim;
  std::vector<int64_t> cuts;
  for (int64_t d = 0; d < dim; d += groupSizeB) cuts.push_back(d);
  for (int64_t d = 0; d < dim; d += groupSizeC) cuts.push_back(d);
  cuts.push_back(dim);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());

  std::vector<ChannelRange> ranges;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const int64_t c0 = cuts[i], c1 = cuts[i + 1];
    int64_t size = (c1 - c0 + kMaxTasksPerCell - 1) / kMaxTasksPerCell;
    size = (size + kTaskChannelMultiple - 1) / kTaskChannelMultiple * kTaskChannelMultiple;
    for (int64_t d = c0; d < c1; d += size) {
      ranges.push_back({d, std::min(c1, d + size), B.varying() ? d / groupSizeB : 0, C.varying() ? d / groupSizeC : 0});
    }
  }
  return ranges;
}

std::vector<Task> tasksFor(const ScanShape &shape, const std::vector<ChannelRange> &ranges) {
  std::vector<Task> tasks;
  tasks.reserve(size_t(shape.batch) * ranges.size());
  for (int64_t b = 0; b < shape.batch; ++b)
    for (size_t r = 0; r < ranges.size(); ++r)
      tasks.push_back({b, ranges[r].d0, ranges[r].d1, ranges[r].groupB, ranges[r].groupC, int64_t(r)});
  return tasks;
}

int64_t widestRange(const std::vector<ChannelRange> &ranges) {
  int64_t widest = 0;
  for (const auto &r : ranges) widest = std::max(widest, r.d1 - r.d0);
  return widest;
}

// One 64-byte aligned buffer per worker thread, for the duration of an op.
class WorkerScratch {
 public:
  explicit WorkerScratch(size_t bytes) : bytes_((bytes + 63) / 64 * 64) {
    for (int i = 0; i < ThreadPool::instance().threads(); ++i) {
      void *p = std::aligned_alloc(64, bytes_);
      if (!p) throw std::bad_alloc();
      buffers_.emplace_back(p, std::free);
    }
  }
  void *operator[](int worker) const { return buffers_[size_t(worker)].get(); }

 private:
  size_t bytes_;
  std::vector<std::unique_ptr<void, decltype(&std::free)>> buffers_;
};

template <class F>
void withDType(DType t, F &&f) {
  switch (t) {
    case DType::Float32: return f(Element<DType::Float32>{});
    case DType::Float16: return f(Element<DType::Float16>{});
    case DType::BFloat16: return f(Element<DType::BFloat16>{});
  }
}

}  // namespace

std::string isaName() { return kernels().isa; }
int threadCount() { return ThreadPool::instance().threads(); }
void setThreadCount(int n) { ThreadPool::instance().setThreads(n); }

int64_t forwardChunkLength(const ScanShape &shape) { return std::min(kChunkLength, shape.seqlen); }

void scanForward(const ScanForwardParams &p) {
  const Kernels &k = kernels();
  const auto ranges = channelRanges(p.shape, p.B, p.C);
  const auto tasks = tasksFor(p.shape, ranges);
  WorkerScratch scratch(k.forwardScratchBytes(p, widestRange(ranges)));
  ThreadPool::instance().parallelFor(int64_t(tasks.size()),
                                     [&](int64_t i, int worker) { k.forward(p, tasks[size_t(i)], scratch[worker]); });
}

void scanBackward(const ScanBackwardParams &bp) {
  const ScanForwardParams &p = bp.fwd;
  const Kernels &k = kernels();
  const int64_t batch = p.shape.batch, dim = p.shape.dim, L = p.shape.seqlen, N = p.shape.dstate;
  const auto ranges = channelRanges(p.shape, p.B, p.C);
  const auto tasks = tasksFor(p.shape, ranges);
  const int64_t partitions = int64_t(ranges.size());

  // Partial sums, finished below in a fixed order.
  std::vector<float> dBVarying(p.B.varying() ? size_t(partitions * batch * N * L) : 0);
  std::vector<float> dCVarying(p.C.varying() ? size_t(partitions * batch * N * L) : 0);
  std::vector<float> dA(size_t(batch * dim * N)), dD(size_t(batch * dim)), ddeltaBias(size_t(batch * dim));
  std::vector<float> dBFixed(p.B.varying() ? 0 : size_t(batch * dim * N));
  std::vector<float> dCFixed(p.C.varying() ? 0 : size_t(batch * dim * N));
  BackwardPartials partials;
  partials.dB = dBVarying.empty() ? nullptr : dBVarying.data();
  partials.dC = dCVarying.empty() ? nullptr : dCVarying.data();
  partials.dA = dA.data();
  partials.dBFixed = dBFixed.empty() ? nullptr : dBFixed.data();
  partials.dCFixed = dCFixed.empty() ? nullptr : dCFixed.data();
  partials.dD = dD.data();
  partials.ddeltaBias = ddeltaBias.data();

  {
    WorkerScratch scratch(k.backwardScratchBytes(bp, widestRange(ranges)));
    ThreadPool::instance().parallelFor(int64_t(tasks.size()), [&](int64_t i, int worker) {
      k.backward(bp, tasks[size_t(i)], partials, scratch[worker]);
    });
  }

  ThreadPool &pool = ThreadPool::instance();
  // Per-channel sums over the batch: rows b in increasing order.
  pool.parallelFor(dim, [&](int64_t d, int) {
    for (int64_t n = 0; n < N; ++n) {
      float a = 0, bf = 0, cf = 0;
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t i = (b * dim + d) * N + n;
        a += dA[size_t(i)];
        if (!dBFixed.empty()) bf += dBFixed[size_t(i)];
        if (!dCFixed.empty()) cf += dCFixed[size_t(i)];
      }
      bp.dA[d * N + n] = a;
      if (!dBFixed.empty()) static_cast<float *>(bp.dB)[d * N + n] = bf;
      if (!dCFixed.empty()) static_cast<float *>(bp.dC)[d * N + n] = cf;
    }
    float sumD = 0, sumBias = 0;
    for (int64_t b = 0; b < batch; ++b) {
      sumD += dD[size_t(b * dim + d)];
      sumBias += ddeltaBias[size_t(b * dim + d)];
    }
    if (bp.dD) bp.dD[d] = sumD;
    if (bp.ddeltaBias) bp.ddeltaBias[d] = sumBias;
  });

  // Varying dB/dC: the partial of every channel range of a group, ranges in channel order.
  auto finishVarying = [&](const std::vector<float> &partial, const Projection &proj, bool isB, void *out) {
    const int64_t G = proj.groups;
    pool.parallelFor(batch * G * N, [&](int64_t i, int) {
      const int64_t b = i / (G * N), g = (i / N) % G, n = i % N;
      std::vector<const float *> sources;
      for (size_t r = 0; r < ranges.size(); ++r)
        if ((isB ? ranges[r].groupB : ranges[r].groupC) == g)
          sources.push_back(partial.data() + ((int64_t(r) * batch + b) * N + n) * L);
      const int64_t dst = ((b * G + g) * N + n) * L;
      withDType(p.dtype, [&](auto element) {
        using E = decltype(element);
        auto *o = static_cast<typename E::Storage *>(out);
        for (int64_t t = 0; t < L; ++t) {
          float s = 0;
          for (const float *src : sources) s += src[t];
          o[dst + t] = E::store(s);
        }
      });
    });
  };
  if (p.B.varying()) finishVarying(dBVarying, p.B, true, bp.dB);
  if (p.C.varying()) finishVarying(dCVarying, p.C, false, bp.dC);
}

double measureExp2Rate() {
  const Kernels &k = kernels();
  ThreadPool &pool = ThreadPool::instance();
  constexpr int64_t kPerThread = int64_t(1) << 26;
  std::vector<float> sink(size_t(pool.threads()));
  auto run = [&] {
    pool.parallelFor(pool.threads(), [&](int64_t task, int) { sink[size_t(task)] = k.exp2Work(kPerThread); });
  };
  run();  // warm up
  const auto start = std::chrono::steady_clock::now();
  run();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  volatile float keep = sink[0];
  (void)keep;
  return double(kPerThread) * pool.threads() / seconds;
}

void stateUpdate(const StateUpdateParams &p) {
  const Kernels &k = kernels();
  const int64_t rows = p.batch * p.heads * p.headDim;
  constexpr int64_t kRowsPerTask = 64;
  ThreadPool::instance().parallelFor((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
    k.stateUpdate(p, task * kRowsPerTask, std::min(rows, (task + 1) * kRowsPerTask));
  });
}

}  // namespace ss::cpu
