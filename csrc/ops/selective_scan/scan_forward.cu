// The forward selective scan on the GPU.
//
// Kernel design (scanForwardKernel<DT, ITEMS>):
//  - One warp per (batch, channel) row, kForwardWarps independent rows per block, a grid-stride
//    loop over rows: short sequences still fill the GPU (mamba_ssm uses a whole block per row), and
//    no grid dimension limits batch or dim. Warps never synchronise with each other.
//  - Time is cut into chunks of kChunk = 32 * ITEMS steps; lane l owns ITEMS consecutive steps of
//    the chunk, loaded as 16-byte vectors when the chunk is full and aligned.
//  - Per chunk, the N state channels in turn: pairs (a_t, dt_t B_t u_t) with a_t = exp2(dt_t A2),
//    a warp scan of the pairs (warpChunkStates) seeded by the state carried from the previous
//    chunk, then y_t += C_t h_t. The carry of each state channel lives in shared memory,
//    double-buffered by chunk parity so that one __syncwarp per chunk orders every read of the old
//    carry before the write of the new one. B_t[n + 1] and C_t[n + 1] are loaded while channel n
//    is scanned.
//  - Checkpoints (h at the last real step of every checkpoint interval, for the backward) every
//    chunkLength = min(kChunk, kMaxCheckpointInterval) steps: the chunk's end state (the new
//    carry) and, when a chunk holds two intervals (ITEMS = 8), lane 15's end state. The interval
//    is capped because the backward, which works one interval at a time with the same layout,
//    needs about 200 registers per thread at 8 steps per lane (about 128 at 4).
//  - Then out = (y + D u) silu(z), rounded once to the dtype. After the last chunk the carry is
//    the last state.
//  - ITEMS (the chunk length) and the dtype are the only template parameters (12 kernels); every
//    option is a run-time branch that is uniform over the warp.
#include <algorithm>

#include "scan_cuda.cuh"

namespace ss::cuda {
namespace {

constexpr int kForwardWarps = 4;  // rows (warps) per block
constexpr int kForwardThreads = kForwardWarps * kWarpSize;
// Blocks per SM the register allocation must allow (4 x 128 threads: at most 128 registers per
// thread). Uncapped, ITEMS = 8 takes ~150 registers and only 3 blocks fit.
constexpr int kForwardMinBlocksPerSM = 4;

// The checkpoint interval never exceeds this many steps (see the file comment).
constexpr int kMaxCheckpointInterval = 128;

// Steps per lane of the forward for a sequence length: the fewest that make one chunk hold the
// whole sequence, else 8 (256-step chunks).
int forwardItems(int64_t L) {
  for (int items : {1, 2, 4})
    if (L <= int64_t(kWarpSize) * items) return items;
  return 8;
}

struct ForwardArgs {
  ScanForwardParams p;
  int64_t rows = 0;         // batch * dim
  int64_t chunks = 0;       // ceil(L / kChunk)
  int64_t checkpoints = 0;  // ceil(L / chunkLength): checkpoint intervals per row
  int64_t sharedFloatsPerWarp = 0;
  bool vectorized = false;  // every (batch, dim, L) and varying B/C row is vector-aligned
};

// Shared memory of one warp, in floats: A2 = A log2(e) [N], fixed B [N] and C [N] when given
// fixed, the carried states [2][N] (double-buffered by chunk parity), and the mid-chunk
// checkpoint [N] (lane 15's end state when a chunk holds two checkpoint intervals).
int64_t forwardSharedFloatsPerWarp(const ScanForwardParams &p) {
  const int64_t N = p.shape.dstate;
  return N * (4 + (p.B.varying() ? 0 : 1) + (p.C.varying() ? 0 : 1));
}

template <DType DT, int ITEMS>
__global__ void __launch_bounds__(kForwardThreads, kForwardMinBlocksPerSM) scanForwardKernel(const ForwardArgs args) {
  using IO = ItemIO<DT, ITEMS>;
  constexpr int kChunk = kWarpSize * ITEMS;
  extern __shared__ float sharedMemory[];

  const ScanForwardParams &p = args.p;
  const int lane = laneIndex(), warp = warpIndex();
  const int64_t dim = p.shape.dim, L = p.shape.seqlen;
  const int N = int(p.shape.dstate);
  const bool varyingB = p.B.varying(), varyingC = p.C.varying();

  float *shared = sharedMemory + warp * args.sharedFloatsPerWarp;
  float *const A2 = shared;
  shared += N;
  float *const fixedB = varyingB ? nullptr : shared;
  shared += varyingB ? 0 : N;
  float *const fixedC = varyingC ? nullptr : shared;
  shared += varyingC ? 0 : N;
  float *const carries = shared;  // [2][N]
  float *const midCheckpoint = shared + 2 * N;
  // Checkpoint intervals per chunk: 1, or 2 when ITEMS = 8 (lane 15 ends the first one).
  constexpr int kIntervalsPerChunk = kChunk > kMaxCheckpointInterval ? kChunk / kMaxCheckpointInterval : 1;
  constexpr int kLanesPerInterval = kWarpSize / kIntervalsPerChunk;
  static_assert(kIntervalsPerChunk <= 2, "one mid-chunk checkpoint at most");

  for (int64_t row = int64_t(blockIdx.x) * kForwardWarps + warp; row < args.rows;
       row += int64_t(gridDim.x) * kForwardWarps) {
    const int64_t b = row / dim, d = row - b * dim;
    const int64_t rowStart = row * L;  // of u, delta, z, out
    // Start of the (n = 0) row of this channel's varying B / C group.
    const int64_t startB = varyingB ? (b * p.B.groups + d / (dim / p.B.groups)) * N * L : 0;
    const int64_t startC = varyingC ? (b * p.C.groups + d / (dim / p.C.groups)) * N * L : 0;
    const float bias = p.deltaBias ? p.deltaBias[d] : 0.0f;
    const float Dd = p.D ? p.D[d] : 0.0f;

    __syncwarp();  // the previous row's last reads of shared memory are done
    for (int n = lane; n < N; n += kWarpSize) {
      A2[n] = p.A[d * N + n] * kLog2e;
      if (!varyingB) fixedB[n] = static_cast<const float *>(p.B.data)[d * N + n];
      if (!varyingC) fixedC[n] = static_cast<const float *>(p.C.data)[d * N + n];
      carries[n] = p.initialState ? p.initialState[row * N + n] : 0.0f;
    }
    __syncwarp();

    for (int64_t c = 0; c < args.chunks; ++c) {
      const int64_t t0 = c * kChunk, laneT0 = t0 + lane * ITEMS;
      const int count = int(std::min<int64_t>(std::max<int64_t>(L - laneT0, 0), ITEMS));
      const bool vectorized = args.vectorized && t0 + kChunk <= L;

      float dt[ITEMS], dtu[ITEMS], y[ITEMS];
      IO::load(p.u, rowStart + laneT0, count, vectorized, dtu);
      IO::load(p.delta, rowStart + laneT0, count, vectorized, dt);
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) {
        dt[i] = deltaToDt(dt[i], bias, p.deltaSoftplus);
        dtu[i] *= dt[i];
        y[i] = 0.0f;
      }

      const float *carryIn = carries + (c & 1) * N;
      float *carryOut = carries + ((c + 1) & 1) * N;
      // B_t[n], C_t[n] of the lane's steps; the next channel's are loaded into the same registers
      // as soon as this channel's are consumed, so the loads overlap the scan.
      auto loadB = [&](int n, float (&Bn)[ITEMS]) {
        if (varyingB) {
          IO::load(p.B.data, startB + int64_t(n) * L + laneT0, count, vectorized, Bn);
        } else {
#pragma unroll
          for (int i = 0; i < ITEMS; ++i) Bn[i] = fixedB[n];
        }
      };
      auto loadC = [&](int n, float (&Cn)[ITEMS]) {
        if (varyingC) {
          IO::load(p.C.data, startC + int64_t(n) * L + laneT0, count, vectorized, Cn);
        } else {
#pragma unroll
          for (int i = 0; i < ITEMS; ++i) Cn[i] = fixedC[n];
        }
      };
      float Bn[ITEMS], Cn[ITEMS];
      loadB(0, Bn);
      loadC(0, Cn);
      for (int n = 0; n < N; ++n) {
        const int nextN = n + 1 < N ? n + 1 : n;
        const float A2n = A2[n];
        float a[ITEMS], bx[ITEMS], h[ITEMS];
#pragma unroll
        for (int i = 0; i < ITEMS; ++i) {
          const bool real = i < count;  // padding steps are the identity pair
          a[i] = real ? exp2Ftz(dt[i] * A2n) : 1.0f;
          bx[i] = real ? dtu[i] * Bn[i] : 0.0f;
        }
        loadB(nextN, Bn);
        const float laneEnd = warpChunkStates(a, bx, carryIn[n], lane, h);
        if (lane == kWarpSize - 1) carryOut[n] = laneEnd;
        if (kIntervalsPerChunk == 2 && lane == kLanesPerInterval - 1) midCheckpoint[n] = laneEnd;
#pragma unroll
        for (int i = 0; i < ITEMS; ++i) y[i] += Cn[i] * h[i];
        loadC(nextN, Cn);
      }
      __syncwarp();  // carryOut complete and visible; reads of carryIn done before it is rewritten

      if (p.checkpoints) {
        // Intervals k0 .. k0 + kIntervalsPerChunk - 1 end in this chunk; the last may lie past L.
        const int64_t k0 = c * kIntervalsPerChunk;
        float *const checkpoint = p.checkpoints + (row * args.checkpoints + k0) * N;
        const bool endIsCheckpoint = k0 + kIntervalsPerChunk - 1 < args.checkpoints;
        for (int n = lane; n < N; n += kWarpSize) {
          if (kIntervalsPerChunk == 2) checkpoint[n] = midCheckpoint[n];
          if (endIsCheckpoint) checkpoint[(kIntervalsPerChunk - 1) * N + n] = carryOut[n];
        }
        // These reads of midCheckpoint are done before lane 15 rewrites it in the next chunk's
        // state loop (otherwise ordered only by that loop's shuffles).
        if (kIntervalsPerChunk == 2) __syncwarp();
      }

      // u again (an L1 hit) rather than held in registers through the state loop.
      float u[ITEMS], z[ITEMS];
      IO::load(p.u, rowStart + laneT0, count, vectorized, u);
      if (p.z) IO::load(p.z, rowStart + laneT0, count, vectorized, z);
#pragma unroll
      for (int i = 0; i < ITEMS; ++i) {
        y[i] += Dd * u[i];
        if (p.z) y[i] *= silu(z[i]);
      }
      IO::store(p.out, rowStart + laneT0, count, vectorized, y);
    }

    if (p.lastState) {
      const float *finalCarry = carries + (args.chunks & 1) * N;
      for (int n = lane; n < N; n += kWarpSize) p.lastState[row * N + n] = finalCarry[n];
    }
  }
}

template <DType DT, int ITEMS>
cudaError_t launchForward(const ScanForwardParams &p, cudaStream_t stream) {
  using IO = ItemIO<DT, ITEMS>;
  const int64_t L = p.shape.seqlen;
  ForwardArgs args;
  args.p = p;
  args.rows = p.shape.batch * p.shape.dim;
  args.chunks = ceilDiv(L, int64_t(kWarpSize) * ITEMS);
  args.checkpoints = ceilDiv(L, p.chunkLength);
  args.sharedFloatsPerWarp = forwardSharedFloatsPerWarp(p);
  args.vectorized = IO::alignedRows(p.u, L) && IO::alignedRows(p.delta, L) && IO::alignedRows(p.out, L) &&
                    (!p.z || IO::alignedRows(p.z, L)) && (!p.B.varying() || IO::alignedRows(p.B.data, L)) &&
                    (!p.C.varying() || IO::alignedRows(p.C.data, L));

  const size_t sharedBytes = size_t(kForwardWarps) * size_t(args.sharedFloatsPerWarp) * sizeof(float);
  const void *kernel = reinterpret_cast<const void *>(&scanForwardKernel<DT, ITEMS>);
  SS_CUDA_TRY(allowSharedMemory(kernel, sharedBytes));
  scanForwardKernel<DT, ITEMS>
      <<<gridBlocks(ceilDiv(args.rows, kForwardWarps)), kForwardThreads, sharedBytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

int64_t scanChunkLength(const ScanShape &shape) {
  // The checkpoint interval: the forward's chunk, capped at kMaxCheckpointInterval steps.
  return std::min<int64_t>(int64_t(kWarpSize) * forwardItems(shape.seqlen), kMaxCheckpointInterval);
}

gpu::Status scanForward(const ScanForwardParams &p, gpu::Stream stream) {
  const ScanShape &s = p.shape;
  SS_CUDA_TRY(checkScanShape(p));
  if (isEmptyScan(s)) return cudaSuccess;
  // The checkpoint layout is fixed by the shape; the caller passes it back in chunkLength.
  if (p.chunkLength != scanChunkLength(s)) return cudaErrorInvalidValue;
  const int items = forwardItems(s.seqlen);
  return dispatchDType(p.dtype, [&](auto dtype) {
    return dispatchItems<8>(items, [&](auto itemsTag) {
      return launchForward<decltype(dtype)::value, decltype(itemsTag)::value>(p, stream);
    });
  });
}

}  // namespace ss::cuda
