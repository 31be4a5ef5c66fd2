// Device helpers of the state space dual scan's CUDA kernels (ssd_scan.cu, ssd_scan_backward.cu):
// the layout of a head's state over a block's threads, the checkpoint interval, the sequences of a
// batch row, and the descriptor checks.
//
// Layout (the recurrent form). A block owns one (batch row, head, tile of positions p). Its
// kSsdThreads threads form groups of `width` consecutive lanes (a power of two, at most a warp:
// the smallest that covers N, 32 from N = 32 up); a group owns one position p of the tile, and its
// lane l owns the states n = l, l + width, ... (NPL of them, NPL = ceil(N / 32), a power of two).
// A sum over n is then a butterfly of xor shuffles inside the group (fixed order: deterministic),
// and a step costs one exp2 per (t, head), computed once per step into shared memory.
#pragma once
#include "../../common/scan_math.h"
#include "../../cuda/kernel_common.cuh"
#include "ssd_scan.h"

namespace ss::cuda {

constexpr int kSsdThreads = 128;
// Steps per checkpoint interval times states per lane: bounds the backward's shared memory (the
// states of one interval, kSsdThreads x NPL floats per step).
constexpr int kSsdStepsTimesStates = 32;

// States per lane: 1, 2, 4 or 8 (N <= 256, the API's maximum).
inline int ssdStatesPerLane(int64_t N) {
  int npl = 1;
  while (int64_t(npl) * kWarpSize < N) npl *= 2;
  return npl;
}

// Lanes per position: the smallest power of two >= N, at most a warp.
inline int ssdGroupWidth(int64_t N) {
  int w = 1;
  while (w < kWarpSize && w < N) w *= 2;
  return w;
}

// The work of one launch: blocks walk `work` = batch x H x tiles items with a grid stride.
struct SsdLayout {
  int width = 1;       // lanes per position
  int positions = 1;   // positions per tile: kSsdThreads / width
  int64_t tiles = 1;   // ceil(P / positions)
  int64_t work = 0;    // batch * H * tiles
  int64_t chunks = 0;  // checkpoint intervals: ceil(L / chunkLength)
};

inline SsdLayout ssdLayout(const SsdForwardParams &p) {
  const SsdShape &s = p.shape;
  SsdLayout l;
  l.width = ssdGroupWidth(s.dstate);
  l.positions = kSsdThreads / l.width;
  l.tiles = ceilDiv(s.headDim, l.positions);
  l.work = s.batch * s.heads * l.tiles;
  l.chunks = ceilDiv(s.seqlen, p.chunkLength);
  return l;
}

// Sum over the `width` lanes of a group, every lane getting the same bits.
__device__ __forceinline__ float groupSum(float v, int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// The sequences of batch row b: with cuSeqlens (batch 1) sequence i is steps [cu[i], cu[i + 1])
// and state row i; without, the whole row, state row b.
struct SsdSegment {
  int64_t start, end, row;
};
__device__ __forceinline__ int64_t segmentCount(const SsdForwardParams &p) { return p.cuSeqlens ? p.sequences : 1; }
__device__ __forceinline__ SsdSegment segmentOf(const SsdForwardParams &p, int64_t b, int64_t i) {
  if (!p.cuSeqlens) return {0, p.shape.seqlen, b};
  return {int64_t(p.cuSeqlens[i]), int64_t(p.cuSeqlens[i + 1]), i};
}

// The descriptor checks both entry points share (users' arguments were checked in lib/).
inline cudaError_t checkSsdShape(const SsdForwardParams &p) {
  const SsdShape &s = p.shape;
  if (s.batch < 0 || s.seqlen < 0 || s.heads < 0 || s.headDim < 0 || s.dstate < 1 || s.dstate > 256 || s.groups < 1 ||
      s.heads % s.groups != 0)
    return cudaErrorInvalidValue;
  if (p.chunkLength != ssdChunkLength(s)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

// The launch of the chunked form (ssd_scan_chunked.cu), for calls ssdChunkedSupports accepts.
gpu::Status ssdChunkedForward(const SsdForwardParams &p, gpu::Stream stream);

}  // namespace ss::cuda
