// Device helpers shared by the CUDA kernels of the selective scan.
//
//  - Warp-wide scans of ScanPair (scan_math.h's scanCombine): the forward direction for the states
//    h_t, the reverse direction for the adjoints g_t, and the per-chunk drivers built on them.
//  - Loads and stores of the ITEMS consecutive elements a lane owns, widened to / rounded from
//    float32 with dtype.h, as one 16-byte (or narrower) vector access per 16 bytes when the caller
//    says the span is in range and aligned, element by element with a bounds check otherwise.
//  - 64-bit sizes, grid sizing without the 65,535 y/z limits, and the launch checks.
//
// Layout shared by the scan kernels: one warp owns one (batch, channel) row; a row is cut into
// chunks of kWarpSize * ITEMS steps; lane l owns steps [l * ITEMS, (l + 1) * ITEMS) of the chunk.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../common/dtype.h"
#include "../common/scan_math.h"
#include "../common/scan_params.h"

namespace ss::cuda {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
// grid.x limit; kernels that could need more blocks loop over their work with a grid stride.
constexpr int64_t kMaxGridBlocks = 0x7fffffff;
// Dynamic shared memory a kernel may use without cudaFuncSetAttribute.
constexpr size_t kDefaultSharedMemoryLimit = 48 * 1024;

// Returns the error of a CUDA runtime call from the enclosing function when it failed.
#define SS_CUDA_TRY(expr)                         \
  do {                                            \
    const cudaError_t ssError_ = (expr);          \
    if (ssError_ != cudaSuccess) return ssError_; \
  } while (0)

__host__ __device__ __forceinline__ int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks for `work` items, one per block, with a grid-stride loop covering any excess.
inline unsigned gridBlocks(int64_t work) {
  if (work < 1) work = 1;
  return unsigned(work < kMaxGridBlocks ? work : kMaxGridBlocks);
}

// Raises a kernel's dynamic shared memory limit when `bytes` exceeds the default 48 KB. The
// runtime rejects a value above the device's opt-in limit (cudaErrorInvalidValue).
inline cudaError_t allowSharedMemory(const void *kernel, size_t bytes) {
  if (bytes <= kDefaultSharedMemoryLimit) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

// Whether a device pointer is aligned to `bytes` (a power of two); null counts as aligned.
inline bool isAligned(const void *p, int bytes) { return (reinterpret_cast<uintptr_t>(p) & uintptr_t(bytes - 1)) == 0; }

__device__ __forceinline__ int laneIndex() { return int(threadIdx.x) & (kWarpSize - 1); }
__device__ __forceinline__ int warpIndex() { return int(threadIdx.x) / kWarpSize; }

// ---- Scans ------------------------------------------------------------------------------------

using Pair = ScanPair<float>;

// What a pair means (scan_math.h): the map h -> a h + b.
__device__ __forceinline__ float applyPair(Pair p, float h) { return p.a * h + p.b; }

__device__ __forceinline__ Pair shuffleUp(Pair p, unsigned delta) {
  return {__shfl_up_sync(kFullMask, p.a, delta), __shfl_up_sync(kFullMask, p.b, delta)};
}
__device__ __forceinline__ Pair shuffleDown(Pair p, unsigned delta) {
  return {__shfl_down_sync(kFullMask, p.a, delta), __shfl_down_sync(kFullMask, p.b, delta)};
}

// Inclusive scan over the lanes in increasing lane order (Hillis-Steele, 5 steps): lane l gets
// the composition of the pairs of lanes 0..l, lane 0's applied first.
__device__ __forceinline__ Pair warpInclusiveScan(Pair x, int lane) {
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const Pair earlier = shuffleUp(x, unsigned(offset));
    if (lane >= offset) x = scanCombine(earlier, x);
  }
  return x;
}

// Inclusive scan over the lanes in decreasing lane order: lane l gets the composition of the
// pairs of lanes 31..l, lane 31's applied first (time runs backwards).
__device__ __forceinline__ Pair warpReverseInclusiveScan(Pair x, int lane) {
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const Pair appliedFirst = shuffleDown(x, unsigned(offset));
    if (lane + offset < kWarpSize) x = scanCombine(appliedFirst, x);
  }
  return x;
}

// Sum over the warp by a butterfly: every lane gets the same bits (float addition commutes, so
// the two lanes of each exchange compute the same sum), and the order is fixed: deterministic.
__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// The states of one chunk for one state channel, warp-wide. Lane l owns ITEMS consecutive steps
// with pairs (a[i], bx[i]) (h_t = a_t h_{t-1} + bx_t; padding steps must be the identity (1, 0)),
// and `carry` (uniform) is the state before the chunk's first step. Each lane composes its own
// pairs sequentially, the warp scans the lane aggregates, and each lane then replays its steps
// from the state its predecessors leave: h[i] = h_t of the lane's steps. Returns the state after
// this lane's last step; lane 31's is the state at the end of the chunk (the next carry).
template <int ITEMS>
__device__ __forceinline__ float warpChunkStates(const float (&a)[ITEMS], const float (&bx)[ITEMS], float carry,
                                                 int lane, float (&h)[ITEMS]) {
  Pair lanePairs{a[0], bx[0]};
#pragma unroll
  for (int i = 1; i < ITEMS; ++i) lanePairs = scanCombine(lanePairs, Pair{a[i], bx[i]});
  const Pair throughLane = warpInclusiveScan(lanePairs, lane);
  const float laneEnd = applyPair(throughLane, carry);
  float state = __shfl_up_sync(kFullMask, laneEnd, 1);
  if (lane == 0) state = carry;
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    state = applyPair(Pair{a[i], bx[i]}, state);
    h[i] = state;
  }
  return laneEnd;
}

// The reverse carry of one chunk for one state channel, warp-wide. With c_t = C_t dy_t, the
// adjoint g_t = c_t + K_t where K_t = a_{t+1} g_{t+1} is what flows into step t from the later
// steps; K_{t-1} = a_t (c_t + K_t), i.e. the pair (a_t, a_t c_t) applied to K_t. Padding steps must
// be (a, c) = (1, 0), so that K passes through them unchanged. `seed` (uniform) is K entering the
// chunk's last step. Returns K entering this lane's last step; the caller then walks its steps
// backwards: g = c[i] + K; K = a[i] g.
template <int ITEMS>
__device__ __forceinline__ float warpChunkReverseCarry(const float (&a)[ITEMS], const float (&c)[ITEMS], float seed,
                                                       int lane) {
  Pair lanePairs{a[ITEMS - 1], a[ITEMS - 1] * c[ITEMS - 1]};
#pragma unroll
  for (int i = ITEMS - 2; i >= 0; --i) lanePairs = scanCombine(lanePairs, Pair{a[i], a[i] * c[i]});
  const Pair throughLane = warpReverseInclusiveScan(lanePairs, lane);
  const float laneOut = applyPair(throughLane, seed);  // K leaving this lane's first step
  float carryIn = __shfl_down_sync(kFullMask, laneOut, 1);
  if (lane == kWarpSize - 1) carryIn = seed;
  return carryIn;
}

// ---- Loads and stores of a lane's items -------------------------------------------------------

template <int kBytes>
struct VectorOfBytes;
template <>
struct VectorOfBytes<2> {
  using Type = unsigned short;
};
template <>
struct VectorOfBytes<4> {
  using Type = unsigned int;
};
template <>
struct VectorOfBytes<8> {
  using Type = uint2;
};
template <>
struct VectorOfBytes<16> {
  using Type = uint4;
};

// ITEMS consecutive elements of dtype DT: as whole vectors of up to 16 bytes, or one by one.
template <DType DT, int ITEMS>
struct ItemIO {
  using Storage = typename Element<DT>::Storage;
  static constexpr int kBytes = ITEMS * int(sizeof(Storage));
  static constexpr int kVectorBytes = kBytes < 16 ? kBytes : 16;  // the alignment the vector path needs
  static constexpr int kVectors = kBytes / kVectorBytes;
  using Vector = typename VectorOfBytes<kVectorBytes>::Type;
  union Pack {
    Vector vectors[kVectors];
    Storage items[ITEMS];
  };

  // out[i] = base[offset + i] for i < count, 0 beyond. `vectorized` (warp-uniform) promises
  // count == ITEMS and base + offset aligned to kVectorBytes. Read-only data: through the
  // non-coherent cache.
  static __device__ __forceinline__ void load(const void *base, int64_t offset, int count, bool vectorized,
                                              float (&out)[ITEMS]) {
    const Storage *p = static_cast<const Storage *>(base) + offset;
    if (vectorized) {
      Pack pack;
#pragma unroll
      for (int v = 0; v < kVectors; ++v) pack.vectors[v] = __ldg(reinterpret_cast<const Vector *>(p) + v);
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) out[i] = Element<DT>::load(pack.items[i]);
    } else {
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) out[i] = i < count ? Element<DT>::load(__ldg(p + i)) : 0.0f;
    }
  }

  // base[offset + i] = in[i] rounded to DT, for i < count; `vectorized` as for load.
  static __device__ __forceinline__ void store(void *base, int64_t offset, int count, bool vectorized,
                                               const float (&in)[ITEMS]) {
    Storage *p = static_cast<Storage *>(base) + offset;
    if (vectorized) {
      Pack pack;
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) pack.items[i] = Element<DT>::store(in[i]);
#pragma unroll
      for (int v = 0; v < kVectors; ++v) reinterpret_cast<Vector *>(p)[v] = pack.vectors[v];
    } else {
#pragma unroll
      for (int i = 0; i < ITEMS; ++i)
        if (i < count) p[i] = Element<DT>::store(in[i]);
    }
  }

  // Whether rows of `rowLength` elements starting at `base` keep every lane's span aligned: the
  // host's half of the vectorized promise (the kernel adds "the chunk is full").
  static bool alignedRows(const void *base, int64_t rowLength) {
    return isAligned(base, kVectorBytes) && (rowLength * int64_t(sizeof(Storage))) % kVectorBytes == 0;
  }
};

// ---- Launch plumbing ----------------------------------------------------------------------------

// The descriptor checks the forward and backward entry points share. Users' arguments are checked
// in lib/ before anything reaches C++; these keep a malformed descriptor from reaching a kernel.
// dstate is bounded so that int arithmetic on state indices is safe (shared memory caps it far
// lower; the launch reports that).
inline cudaError_t checkScanShape(const ScanForwardParams &p) {
  const ScanShape &s = p.shape;
  if (s.batch < 0 || s.dim < 0 || s.seqlen < 0 || s.dstate < 1 || s.dstate > 65536) return cudaErrorInvalidValue;
  if ((p.B.varying() && s.dim % p.B.groups != 0) || (p.C.varying() && s.dim % p.C.groups != 0))
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

// A scan with no steps to run: nothing is launched.
inline bool isEmptyScan(const ScanShape &s) { return s.batch == 0 || s.dim == 0 || s.seqlen == 0; }

// Calls f(std::integral_constant-like tag) with the dtype as a compile-time value.
template <DType DT>
struct DTypeTag {
  static constexpr DType value = DT;
};
template <class F>
cudaError_t dispatchDType(DType t, F &&f) {
  switch (t) {
    case DType::Float32: return f(DTypeTag<DType::Float32>{});
    case DType::Float16: return f(DTypeTag<DType::Float16>{});
    case DType::BFloat16: return f(DTypeTag<DType::BFloat16>{});
  }
  return cudaErrorInvalidValue;
}

// The chunk shapes the scan kernels are compiled for: ITEMS steps per lane, 32 * ITEMS per chunk.
// kMaxItems bounds the shapes instantiated (the backward stops at 4).
template <int ITEMS>
struct ItemsTag {
  static constexpr int value = ITEMS;
};
template <int kMaxItems, class F>
cudaError_t dispatchItems(int items, F &&f) {
  static_assert(kMaxItems == 1 || kMaxItems == 2 || kMaxItems == 4 || kMaxItems == 8, "ITEMS is a power of two <= 8");
  switch (items) {
    case 1: return f(ItemsTag<1>{});
    case 2:
      if constexpr (kMaxItems >= 2) return f(ItemsTag<2>{});
      break;
    case 4:
      if constexpr (kMaxItems >= 4) return f(ItemsTag<4>{});
      break;
    case 8:
      if constexpr (kMaxItems >= 8) return f(ItemsTag<8>{});
      break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace ss::cuda
