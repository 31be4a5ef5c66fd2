// One step of the recurrence for decoding (selectiveStateUpdate) on the GPU.
//
// The step reads and writes the whole state once and does a few flops per element: it is bound by
// memory, and what decides its speed is how many bytes each SM keeps in flight. By Little's law an
// H200 (4.8 TB/s over 132 SMs, about 0.8 us loaded DRAM latency) needs roughly 29 KB of loads in
// flight per SM to reach its copy bandwidth. One 4-byte state load per thread, used before the next
// is issued (this kernel's first design), gave 5 KB: under a fifth of it (npm run kernel-stats).
//
// Kernel design (stateUpdateKernel<DT, kVec>):
//  - A row is one (batch row i, head h, position p) with its N state elements contiguous (state is
//    (slots, H, P, N)). A chunk is 4 consecutive elements of a row: one 16-byte (float4) load and
//    store of the state, one 16-byte (float32) or 8-byte (16-bit) load of A, B and C.
//  - Each thread owns kChunksPerLane = 4 chunks of one row: a segment of lanesPerRow = next power
//    of two >= N / 16 lanes owns a row (1 lane at N <= 16, 8 at N = 128, 16 at N = 256), lane s the
//    chunks s, s + lanesPerRow, ...: each load instruction covers lanesPerRow * 16 contiguous bytes
//    of each row, and 4 chunks of one row need one row's index math and registers, where 4 rows of
//    one chunk each would need four (they spilled at the 64 registers of 4 blocks per SM).
//  - Phase 1 issues every load whose bytes come from DRAM — the 4 state chunks (64 bytes), x and dt
//    — before any of them is used: 64 bytes of state per thread in flight, 64 KB per SM at the
//    1024 resident threads that <= 64 registers allow (4 blocks of 256). Below N = 16 a thread has
//    N * 4 bytes (those sizes are not the decoding shapes that matter).
//  - Phase 2: dt (bias, softplus) once per row, and with one scalar per head exp(dt A) once per row
//    too (not per element). The lanes of a row compute the same values, which costs issue slots
//    once per warp: at N = 128 a warp holds 4 rows of one head, about 3 thread-instructions per
//    element·state; once per head would need a head's rows in one thread, whose registers spill.
//    A, B, C, dtBias and D are small and shared by many rows (L1/L2 hits): loaded next to their
//    use, all chunks before the first store so that they can be in flight together. Index math
//    once per row: 32-bit divisions when batch * H * P < 2^32, 64-bit ones otherwise; nothing is
//    divided per element.
//  - y: the segment's partials summed by a butterfly confined to the segment, stored by its first
//    lane. Deterministic.
//  - kVec = false (N not a multiple of 4, or a pointer not aligned for the vectors) is the same
//    kernel with element-wise accesses and a count per chunk (the tail of a row).
//  - A grid-stride loop over the rows (batch * H * P is unbounded); offsets are 64-bit.
// All three forms of docs/API.md are the heads form (state_update.h): A, dt and dtBias per head
// are broadcast over P (and N) when scalarPerHead. A negative slot (stateBatchIndices) is a
// padding row: y = 0 and its state is neither read nor written.
#include "../../common/scan_math.h"
#include "../../cuda/kernel_common.cuh"
#include "state_update.h"

namespace ss::cuda {
namespace {

constexpr int kStateUpdateThreads = 256;
// 4 resident blocks per SM (<= 64 registers): 1024 threads, 64 KB of state loads in flight per SM.
// The element-wise fallback gets 3 (it spilled at 64 registers).
constexpr int kStateUpdateMinBlocks = 4;
constexpr int kChunk = 4;           // state elements per 16-byte access
constexpr int kChunksPerLane = 4;   // 64 bytes of state per thread in flight
constexpr int kMaxStateSize = 256;  // docs/API.md (checked by the binding): 16 lanes per row at most

// The state (read and written by this kernel, so not through the read-only cache): a chunk of
// `count` elements, as one float4 when kVec.
template <bool kVec>
__device__ __forceinline__ void loadState(const float *p, int count, float (&v)[kChunk]) {
  if constexpr (kVec) {
    const float4 q = *reinterpret_cast<const float4 *>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
#pragma unroll
    for (int j = 0; j < kChunk; ++j) v[j] = j < count ? p[j] : 0.0f;
  }
}
template <bool kVec>
__device__ __forceinline__ void storeState(float *p, int count, const float (&v)[kChunk]) {
  if constexpr (kVec) {
    float4 q;
    q.x = v[0], q.y = v[1], q.z = v[2], q.w = v[3];
    *reinterpret_cast<float4 *>(p) = q;
  } else {
#pragma unroll
    for (int j = 0; j < kChunk; ++j)
      if (j < count) p[j] = v[j];
  }
}

template <DType DT, bool kVec>
__global__ void __launch_bounds__(kStateUpdateThreads, kVec ? kStateUpdateMinBlocks : kStateUpdateMinBlocks - 1)
    stateUpdateKernel(const StateUpdateParams p, int lanesPerRowLog2, bool narrowRows) {
  using IO = ItemIO<DT, kChunk>;
  using FloatIO = ItemIO<DType::Float32, kChunk>;
  const int lanesPerRow = 1 << lanesPerRowLog2;
  const int lane = laneIndex();
  const int segmentLane = lane & (lanesPerRow - 1);
  const int N = int(p.dstate);
  const int64_t H = p.heads, P = p.headDim, HP = H * P;
  const int64_t rows = p.batch * HP, headsPerGroup = H / p.groups;
  const int64_t warpsPerBlock = kStateUpdateThreads / kWarpSize;
  const int64_t rowsPerWarp = kWarpSize >> lanesPerRowLog2;
  const int64_t rowStride = int64_t(gridDim.x) * warpsPerBlock * rowsPerWarp;
  // Chunk c of this lane's row: its first element and how many of its elements exist.
  int n0[kChunksPerLane], count[kChunksPerLane];
#pragma unroll
  for (int c = 0; c < kChunksPerLane; ++c) {
    n0[c] = (segmentLane + c * lanesPerRow) * kChunk;
    const int left = N - n0[c];
    count[c] = left < 0 ? 0 : left < kChunk ? left : kChunk;
  }

  // The loop bound is the warp's first row, so every lane of a warp runs the same iterations.
  for (int64_t warpRow = (int64_t(blockIdx.x) * warpsPerBlock + warpIndex()) * rowsPerWarp; warpRow < rows;
       warpRow += rowStride) {
    const int64_t row = warpRow + (lane >> lanesPerRowLog2);  // (i, h, pp) of (batch, H, P)
    // Index math once per row. 32-bit divisions when they suffice: a few instructions instead of a
    // 64-bit division's call.
    int64_t i, channel, head;  // channel = h * P + pp
    if (narrowRows) {
      const uint32_t r = uint32_t(row), hp = uint32_t(HP), c = r - (r / hp) * hp;
      i = r / hp;
      channel = c;
      head = c / uint32_t(P);
    } else {
      i = row / HP;
      channel = row - i * HP;
      head = channel / P;
    }
    const bool inRange = row < rows;
    const int64_t slot = !inRange ? -1 : p.stateBatchIndices ? int64_t(p.stateBatchIndices[i]) : i;
    const bool live = slot >= 0;  // a negative slot is a padding row: y = 0, state untouched
    float *const state = p.state + (live ? (slot * HP + channel) * N : 0);

    // ---- Phase 1: every load of this row's DRAM bytes (the state chunks, x, dt), none used yet.
    float h[kChunksPerLane][kChunk];
    float x = 0.0f, dtRaw = 0.0f;
    if (live) {
#pragma unroll
      for (int c = 0; c < kChunksPerLane; ++c)
        if (count[c] > 0) loadState<kVec>(state + n0[c], count[c], h[c]);
      x = loadElement<DT>(p.x, row);
      dtRaw = loadElement<DT>(p.dt, p.scalarPerHead ? i * H + head : row);
    }

    // ---- Phase 2: dt once per row (with one scalar per head, exp(dt A) too), then the chunks;
    // A, B, C are shared by many rows (L1/L2 hits) and loaded next to their use, all before the
    // first store so that the compiler may issue them together.
    float partial = 0.0f;
    if (live) {
      const float bias = p.dtBias ? p.dtBias[p.scalarPerHead ? head : channel] : 0.0f;
      const float dt = deltaToDt(dtRaw, bias, p.dtSoftplus);
      const float dtx = dt * x;
      const float aHead = p.scalarPerHead ? exp2f(dt * p.A[head] * kLog2e) : 0.0f;
      const int64_t bc = (i * p.groups + head / headsPerGroup) * N;  // B, C: (batch, G, N)
#pragma unroll
      for (int c = 0; c < kChunksPerLane; ++c) {
        if (count[c] == 0) continue;
        float b[kChunk], cv[kChunk], a[kChunk];
        IO::load(p.B, bc + n0[c], count[c], kVec, b);
        IO::load(p.C, bc + n0[c], count[c], kVec, cv);
        if (p.scalarPerHead) {
#pragma unroll
          for (int j = 0; j < kChunk; ++j) a[j] = aHead;
        } else {
          FloatIO::load(p.A, channel * N + n0[c], count[c], kVec, a);
#pragma unroll
          for (int j = 0; j < kChunk; ++j) a[j] = exp2f(dt * a[j] * kLog2e);
        }
#pragma unroll
        for (int j = 0; j < kChunk; ++j) {
          h[c][j] = stateStep(a[j], h[c][j], dtx, b[j]);
          partial += cv[j] * h[c][j];  // elements past N: C = 0
        }
      }
#pragma unroll
      for (int c = 0; c < kChunksPerLane; ++c)
        if (count[c] > 0) storeState<kVec>(state + n0[c], count[c], h[c]);
    }
    for (int offset = lanesPerRow / 2; offset > 0; offset /= 2) partial += __shfl_xor_sync(kFullMask, partial, offset);

    if (inRange && segmentLane == 0) {
      float y = 0.0f;
      if (live) {
        y = partial;
        if (p.D) y += p.D[head * p.dStrideHead + (channel - head * P) * p.dStrideP] * x;
        if (p.z) y *= silu(loadElement<DT>(p.z, row));
      }
      static_cast<typename Element<DT>::Storage *>(p.y)[row] = Element<DT>::store(y);
    }
  }
}

}  // namespace

gpu::Status stateUpdate(const StateUpdateParams &p, gpu::Stream stream) {
  if (p.batch < 0 || p.heads < 0 || p.headDim < 0 || p.dstate < 0) return cudaErrorInvalidValue;
  const int64_t rows = p.batch * p.heads * p.headDim;
  if (rows == 0) return cudaSuccess;
  if (p.dstate == 0 || p.dstate > kMaxStateSize || p.groups <= 0 || p.heads % p.groups != 0)
    return cudaErrorInvalidValue;

  // Lanes per row: enough for kChunksPerLane chunks each (1 lane at N <= 16, 8 at N = 128, 16 at 256).
  const int64_t lanesNeeded = ceilDiv(ceilDiv(p.dstate, kChunk), kChunksPerLane);
  int lanesPerRowLog2 = 0;
  while ((int64_t(1) << lanesPerRowLog2) < lanesNeeded) ++lanesPerRowLog2;
  const int64_t rowsPerBlock = (kStateUpdateThreads / kWarpSize) * (kWarpSize >> lanesPerRowLog2);
  const bool narrowRows = rows <= int64_t(UINT32_MAX);
  // 16-byte accesses need every chunk aligned: N a multiple of 4 and the bases aligned for the
  // vector of each tensor (state and A: 16 bytes, B and C: 4 elements).
  const bool vec = p.dstate % kChunk == 0 && isAligned(p.state, 16) && (p.scalarPerHead || isAligned(p.A, 16)) &&
                   dispatchDType(p.dtype, [&](auto dtype) {
                     using IO = ItemIO<decltype(dtype)::value, kChunk>;
                     return isAligned(p.B, IO::kVectorBytes) && isAligned(p.C, IO::kVectorBytes);
                   });
  const unsigned blocks = gridBlocks(ceilDiv(rows, rowsPerBlock));
  return dispatchDType(p.dtype, [&](auto dtype) {
    constexpr DType DT = decltype(dtype)::value;
    if (vec) {
      stateUpdateKernel<DT, true><<<blocks, kStateUpdateThreads, 0, stream>>>(p, lanesPerRowLog2, narrowRows);
    } else {
      stateUpdateKernel<DT, false><<<blocks, kStateUpdateThreads, 0, stream>>>(p, lanesPerRowLog2, narrowRows);
    }
    return cudaGetLastError();
  });
}

}  // namespace ss::cuda
