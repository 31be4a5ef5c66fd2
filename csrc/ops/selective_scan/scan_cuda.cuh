// Device helpers of the selective scan's CUDA kernels (scan_forward.cu, scan_backward.cu).
//
//  - Warp-wide scans of ScanPair (scan_math.h's scanCombine): the forward direction for the states
//    h_t, the reverse direction for the adjoints g_t, and the per-chunk drivers built on them.
//  - The descriptor checks both entry points share.
//
// Layout shared by the scan kernels: one warp owns one (batch, channel) row; a row is cut into
// chunks of kWarpSize * ITEMS steps; lane l owns steps [l * ITEMS, (l + 1) * ITEMS) of the chunk.
#pragma once
#include "../../common/scan_math.h"
#include "../../cuda/kernel_common.cuh"
#include "scan.h"

namespace ss::cuda {

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

// One step of the forward warp scan: x = scanCombine(the pair kOffset lanes below, x) where that
// lane exists, x unchanged on the lowest kOffset lanes. On the GPU it is four instructions and no
// branch: the shuffles' own in-range predicate guards the multiply and the FMA (the lanes would
// otherwise diverge around them, and the warp issue both sides). The emulator runs the C++ below
// (the same arithmetic: nvcc contracts the combine's b into the same FMA).
template <int kOffset>
__device__ __forceinline__ void warpScanStepUp(Pair &x, int lane) {
#if defined(__NVCC__) && defined(__CUDA_ARCH__)
  asm("{\n\t.reg .pred inRange;\n\t.reg .f32 earlierA, earlierB;\n\t"
      "shfl.sync.up.b32 earlierA|inRange, %0, %2, 0, -1;\n\t"
      "shfl.sync.up.b32 earlierB, %1, %2, 0, -1;\n\t"
      "@inRange fma.rn.f32 %1, %0, earlierB, %1;\n\t"
      "@inRange mul.rn.f32 %0, %0, earlierA;\n\t}"
      : "+f"(x.a), "+f"(x.b)
      : "n"(kOffset));
#else
  const Pair earlier = shuffleUp(x, unsigned(kOffset));
  if (lane >= kOffset) x = scanCombine(earlier, x);
#endif
}

// The value `v` of the lane below, and `lowest` on lane 0 (a shuffle and a predicated move).
__device__ __forceinline__ float shiftUpOneLane(float v, float lowest, int lane) {
#if defined(__NVCC__) && defined(__CUDA_ARCH__)
  float r;
  asm("{\n\t.reg .pred inRange;\n\t"
      "shfl.sync.up.b32 %0|inRange, %1, 1, 0, -1;\n\t"
      "@!inRange mov.f32 %0, %2;\n\t}"
      : "=f"(r)
      : "f"(v), "f"(lowest));
  return r;
#else
  const float below = __shfl_up_sync(kFullMask, v, 1);
  return lane == 0 ? lowest : below;
#endif
}

// Inclusive scan over the lanes in increasing lane order (Hillis-Steele, 5 steps): lane l gets
// the composition of the pairs of lanes 0..l, lane 0's applied first.
__device__ __forceinline__ Pair warpInclusiveScan(Pair x, int lane) {
  static_assert(kWarpSize == 32, "five steps");
  warpScanStepUp<1>(x, lane);
  warpScanStepUp<2>(x, lane);
  warpScanStepUp<4>(x, lane);
  warpScanStepUp<8>(x, lane);
  warpScanStepUp<16>(x, lane);
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
  float state = shiftUpOneLane(laneEnd, carry, lane);
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

// Packed sequences: the first i with cuSeqlens[i] > t (cuSeqlens holds sequences + 1 offsets, the
// last L > t, so the answer is at most `sequences`). Sequence index - 1 is the one holding step t.
__device__ __forceinline__ int64_t firstOffsetAbove(const int32_t *cuSeqlens, int64_t sequences, int64_t t) {
  int64_t lo = 0, hi = sequences;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (cuSeqlens[mid] > t)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// The states of one chunk for one state channel with packed-sequence starts inside it: as
// warpChunkStates, but a step whose bit is set in `resets` starts a sequence, and its pair is the
// constant map h -> bx (bx already holds a init + dt B u). The scan operator selects on that flag
// rather than multiplying by a zero a, so an Inf or NaN state of one sequence never reaches the
// next: (f1, p1) then (f2, p2) is (f2, p2) when f2 is set, else (f1, scanCombine(p1, p2)).
template <int ITEMS>
__device__ __forceinline__ float warpChunkStatesPacked(const float (&a)[ITEMS], const float (&bx)[ITEMS],
                                                       unsigned resets, float carry, int lane, float (&h)[ITEMS]) {
  Pair lanePairs{a[0], bx[0]};
  int reset = resets & 1u;
#pragma unroll
  for (int i = 1; i < ITEMS; ++i) {
    if ((resets >> i) & 1u) {
      lanePairs = Pair{a[i], bx[i]};
      reset = 1;
    } else {
      lanePairs = scanCombine(lanePairs, Pair{a[i], bx[i]});
    }
  }
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const Pair earlier = shuffleUp(lanePairs, unsigned(offset));
    const int earlierReset = __shfl_up_sync(kFullMask, reset, unsigned(offset));
    if (lane >= offset && !reset) {
      lanePairs = scanCombine(earlier, lanePairs);
      reset = earlierReset;
    }
  }
  const float laneEnd = reset ? lanePairs.b : applyPair(lanePairs, carry);
  float state = shiftUpOneLane(laneEnd, carry, lane);
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) {
    state = ((resets >> i) & 1u) ? bx[i] : applyPair(Pair{a[i], bx[i]}, state);
    h[i] = state;
  }
  return laneEnd;
}

// warpChunkReverseCarry with packed-sequence starts: a step whose bit is set in `resets` starts a
// sequence, so K flowing out of it (into the previous sequence's last step) is not a g of this
// one but the constant `reset[i]` (that sequence's dLastState, or 0): the pair there is the
// constant map, selected by a flag as in warpChunkStatesPacked. The caller's walk does the same:
// g = c[i] + K; K = a[i] g (this sequence's dInitialState at a start), then K = reset[i].
template <int ITEMS>
__device__ __forceinline__ float warpChunkReverseCarryPacked(const float (&a)[ITEMS], const float (&c)[ITEMS],
                                                             unsigned resets, const float (&reset)[ITEMS], float seed,
                                                             int lane) {
  auto stepPair = [&](int i) { return ((resets >> i) & 1u) ? Pair{1.0f, reset[i]} : Pair{a[i], a[i] * c[i]}; };
  Pair lanePairs = stepPair(ITEMS - 1);
  int flag = (resets >> (ITEMS - 1)) & 1u;
#pragma unroll
  for (int i = ITEMS - 2; i >= 0; --i) {
    if ((resets >> i) & 1u) {
      lanePairs = stepPair(i);
      flag = 1;
    } else {
      lanePairs = scanCombine(lanePairs, stepPair(i));
    }
  }
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const Pair appliedFirst = shuffleDown(lanePairs, unsigned(offset));
    const int appliedFirstFlag = __shfl_down_sync(kFullMask, flag, unsigned(offset));
    if (lane + offset < kWarpSize && !flag) {
      lanePairs = scanCombine(appliedFirst, lanePairs);
      flag = appliedFirstFlag;
    }
  }
  const float laneOut = flag ? lanePairs.b : applyPair(lanePairs, seed);
  float carryIn = __shfl_down_sync(kFullMask, laneOut, 1);
  if (lane == kWarpSize - 1) carryIn = seed;
  return carryIn;
}

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

}  // namespace ss::cuda
