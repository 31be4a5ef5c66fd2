// The backward selective scan on the GPU.
//
// Main kernel (scanBackwardKernel<DT, ITEMS>), the forward's layout run backwards in time:
//  - One warp per (batch, channel) row, lanes over ITEMS consecutive steps each. A chunk is one
//    checkpoint interval of the forward (params.fwd.chunkLength = 32 * ITEMS; ITEMS <= 4, see
//    kMaxBackwardItems).
//  - Chunks in reverse. For chunk c and state channel n: recompute the chunk's states h_t from the
//    checkpoint of chunk c - 1 (initialState / 0 for c = 0) with the forward's warp scan, then run
//    the reverse scan of the adjoint g_t = C_t dy_t + a_{t+1} g_{t+1} (warpChunkReverseCarry),
//    seeded by K = a g carried from the later chunk (dLastState for the last one), and form the
//    per-step gradient terms of scan_math.h's stateGrads. Padding steps past L are identity pairs
//    and contribute nothing.
//  - Packed sequences (scanBackwardKernel<DT, ITEMS, true>): a step that starts a sequence is a
//    reset of both warp scans (scan_cuda.cuh's *Packed variants: a select on a flag, never a
//    multiply by 0): its state is a init + dt B u, its a g is that sequence's dInitialState, and
//    the K flowing into the step before it is the ended sequence's dLastState, not a g; the last
//    chunk starts from the last non-empty sequence's dLastState; an empty sequence's dInitialState
//    is its dLastState.
//  - Per warp, a shared-memory table holds for every state channel A, K, the chunk's starting
//    state and the row's running sums (dA, fixed dB/dC); one 16-byte load per channel. After
//    chunk 0, K is dInitialState.
//  - du, ddelta and dz are per step and complete after the chunk's state loop. Sums over steps
//    (dA, fixed dB/dC, dD, ddeltaBias) are formed per row in a fixed order (a lane's steps, a warp
//    butterfly, chunk after chunk) and written once per row to float32 scratch;
//    reduceChannelSumsKernel adds the rows of the batch in increasing b. No float atomics there:
//    deterministic in both modes.
//  - Input-dependent dB_t/dC_t sum over the channels of a group. A block is kBackwardWarps (R)
//    warps whose rows share the batch row and one "cell" (channels with the same B group and the
//    same C group), moving in lockstep through chunks and state channels: after each state
//    channel the warps put their per-step terms in shared memory (double-buffered), one
//    __syncthreads, and thread j sums step j over the R warps in warp order. The block owns a
//    "partition" of consecutive channels of its cell and walks it R rows at a time. The R-warp sums
//    go
//      default:       into float32 (batch, G, N, L) sums with atomicAdd (the output itself when
//                     the dtype is float32), converted to the dtype afterwards;
//      deterministic: into the block's own float32 slice [partition][batch][N][L], read-modify-
//                     written in row-set order; reducePartitionsKernel then adds the partitions of
//                     each group in increasing order and rounds once.
//    The partition split depends on the shape and mode only (kBackwardTargetBlocks; in
//    deterministic mode also the memory cap kDeterministicPartialsPerCheckpoint), never on the
//    device.
//  - Scratch (the partials) comes from cudaMallocAsync on the stream and is freed on it after the
//    kernels that use it are queued.
#include <algorithm>
#include <numeric>

#include "../../cuda/cuda_ops.h"
#include "scan_cuda.cuh"

namespace ss::cuda {
namespace {

// Steps per lane at most: the forward's checkpoint interval is capped at 32 * 4 steps because
// at 8 steps per lane this kernel needs ~200 registers (8 warps per SM), at 4 it fits 128.
constexpr int kMaxBackwardItems = 4;
constexpr int kBackwardWarps = 4;  // R: rows (warps) per block, summed together for dB/dC
constexpr int kBackwardThreads = kBackwardWarps * kWarpSize;
// Blocks per SM the register allocation must allow: 4 x 128 threads, at most 128 registers.
constexpr int kBackwardMinBlocksPerSM = 4;
// The backward's work items (batch row, cell, partition) are made at least this many where the
// cells have enough rows, so that any GPU is filled (~8 blocks per SM on a 132-SM H100, with
// room for the tail). A constant, so that the order of the deterministic sums is a function of
// the shape only. It also sets the memory of deterministic mode: about this many float32 copies
// of one (N, L) slice per input-dependent projection (fewer when the cells are few rows).
constexpr int64_t kBackwardTargetBlocks = 1024;
// Deterministic mode keeps, per partition and batch row, a float32 (N, L) slice for each
// input-dependent projection. Its partitions are capped so that these slices hold at most this
// many times the floats of the checkpoints: memory beyond inputs, outputs and gradients stays
// O(batch * dim * chunks * N) (long sequences at batch 1 would otherwise take ~1024 (N, L) slices,
// 16x the input at L = 65536), at the price of fewer blocks where the cap binds.
constexpr int64_t kDeterministicPartialsPerCheckpoint = 8;

// How the rows of the backward are cut into blocks' work. A cell is a run of cellSize
// consecutive channels with the same B group and the same C group; each cell is cut into
// partitionsPerCell partitions of partitionSize channels (a multiple of R; the cell's last
// partition may be shorter). A work item is (batch row, cell, partition).
struct BackwardLayout {
  int64_t cellSize = 0, cells = 0, partitionsPerCell = 0, partitionSize = 0, workItems = 0;
};

BackwardLayout backwardLayout(const ScanForwardParams &p, bool deterministic) {
  const int64_t batch = p.shape.batch, dim = p.shape.dim;
  const int64_t groupSizeB = p.B.varying() ? dim / p.B.groups : dim;
  const int64_t groupSizeC = p.C.varying() ? dim / p.C.groups : dim;
  BackwardLayout l;
  l.cellSize = std::gcd(groupSizeB, groupSizeC);
  l.cells = dim / l.cellSize;
  const int64_t rowSetsPerCell = ceilDiv(l.cellSize, kBackwardWarps);
  int64_t wanted = ceilDiv(kBackwardTargetBlocks, batch * l.cells);
  if (deterministic && (p.B.varying() || p.C.varying())) {
    // cells * partitionsPerCell * batch * N * L <= factor * batch * dim * checkpoints * N
    const int64_t checkpoints = ceilDiv(p.shape.seqlen, p.chunkLength);
    const int64_t cap = kDeterministicPartialsPerCheckpoint * dim * checkpoints / (p.shape.seqlen * l.cells);
    wanted = std::min(wanted, cap);
  }
  const int64_t partitions = std::min(std::max<int64_t>(wanted, 1), rowSetsPerCell);
  l.partitionSize = ceilDiv(rowSetsPerCell, partitions) * kBackwardWarps;
  l.partitionsPerCell = ceilDiv(l.cellSize, l.partitionSize);  // no empty partition
  l.workItems = batch * l.cells * l.partitionsPerCell;
  return l;
}

struct BackwardArgs {
  ScanBackwardParams p;
  BackwardLayout layout;
  int64_t chunks = 0;
  bool vectorized = false;  // every (batch, dim, L) and varying B/C row is vector-aligned
  // Per-row sums over time, float32 [batch * dim][N] or [batch * dim]; null when not wanted.
  float *dAPartial = nullptr, *dBFixedPartial = nullptr, *dCFixedPartial = nullptr;
  float *dDPartial = nullptr, *ddeltaBiasPartial = nullptr;
  // Sums of the input-dependent dB / dC (null when B / C is fixed or not wanted): default mode
  // (batch, G, N, L) float32 sums; deterministic mode [partition][batch][N][L] partials.
  float *dBVarying = nullptr, *dCVarying = nullptr;
};

// Each warp's per-state-channel table in shared memory: kTableStride floats per state channel n,
// the first float4 always used, the second when B or C is fixed. One 16-byte load per channel
// fetches what the state loop needs; only lane 0 writes K and the sums.
enum TableSlot : int {
  kSlotA = 0,       // A[d, n]
  kSlotK = 1,       // K = a_{t+1} g_{t+1} flowing into the current chunk's last step
  kSlotHStart = 2,  // the state before the current chunk (its checkpoint)
  kSlotDA = 3,      // this row's dA so far
  kSlotB = 4,       // fixed B[d, n]
  kSlotC = 5,       // fixed C[d, n]
  kSlotDB = 6,      // this row's fixed dB so far
  kSlotDC = 7,      // this row's fixed dC so far
  kTableStride = 8
};

// The R-warp reduction buffer of one (phase, projection): R rows of 32 lanes x kPad floats,
// lane l's ITEMS steps at [l * kPad, l * kPad + ITEMS). The odd pad makes the lanes' stores of one
// step land in 32 different banks.
template <int ITEMS>
struct ReductionShape {
  static constexpr int kPad = ITEMS == 1 ? 1 : ITEMS + 1;
  static constexpr int kWarpStride = kWarpSize * kPad;
  static constexpr int kFloats = kBackwardWarps * kWarpStride;  // one (phase, projection)
};

template <int ITEMS>
size_t backwardSharedBytes(int reductions, int64_t N) {
  return (size_t(2) * reductions * ReductionShape<ITEMS>::kFloats + size_t(kBackwardWarps) * N * kTableStride) *
         sizeof(float);
}

// The R warps' terms of one step (src: warp 0's), summed in warp order.
template <class Reduction>
__device__ __forceinline__ float sumOverWarps(const float *src) {
  float sum = 0.0f;
#pragma unroll
  for (int w = 0; w < kBackwardWarps; ++w) sum += src[w * Reduction::kWarpStride];
  return sum;
}

// Adds a block's sum for one (n, t) to the input-dependent dB / dC sums: with a float atomic by
// default; deterministic: to the block's own partial (written by its first row set, then added to
// in row-set order; only this block touches it).
__device__ __forceinline__ void accumulateStep(float *dst, float sum, bool deterministic, bool firstSet) {
  if (!deterministic)
    atomicAdd(dst, sum);
  else
    *dst = firstSet ? sum : *dst + sum;
}

// ---- The stages of scanBackwardKernel ---------------------------------------------------------
//
// Stages of the kernel's chunk, named after the CPU backend's BackwardTask where one fits. They are
// force-inlined, and they take plain values: nvcc simplifies a function on its own before inlining
// it, so a new boundary can change the kernel's code. Each of these was checked against
// kernel-stats for every instantiation (the same registers, spills and state-loop instruction
// counts). The state loop over the N state channels (recompute, reverse sweep, reductions) stays
// in the kernel, as do the row's table and its final sums: split out, they changed ptxas's
// register allocation (table: bfloat16 2-step kernel 112 -> 108 registers; final sums: 4-step
// float32 127 -> 128; per-step gradients 127 -> 125; state-loop stages: 96 -> 128 and a
// different state loop).

// Per chunk c: the state it starts from into the table (recomputeStates' start on the CPU): the
// forward's checkpoint of chunk c - 1, or initialState (0 without) for c = 0. With packed
// sequences step 0 is a reset: the start state is not used there.
__device__ __forceinline__ void loadChunkStart(const BackwardArgs &args, float *table, int lane, int N, int64_t row,
                                               bool active, const int32_t *cu, int64_t c) {
  const ScanForwardParams &p = args.p.fwd;
  const float *start = c > 0 ? p.checkpoints + (row * args.chunks + c - 1) * N
                             : (p.initialState && !cu ? p.initialState + row * N : nullptr);
  __syncwarp();  // the previous chunk's reads of the table are done
  for (int n = lane; n < N; n += kWarpSize) table[n * kTableStride + kSlotHStart] = active && start ? start[n] : 0.0f;
  __syncwarp();
}

// The lane's steps of the chunk from `at` (the CPU's startBlockChunk and the first half of
// gateBackward): u, dt = softplus(delta + bias) (or delta + bias), and dy = dout silu(z) (dout
// without z).
template <DType DT, int ITEMS>
__device__ __forceinline__ void loadChunkSteps(const ScanBackwardParams &bp, int64_t at, int count, bool vectorized,
                                               bool hasZ, float bias, float (&u)[ITEMS], float (&dt)[ITEMS],
                                               float (&dy)[ITEMS]) {
  using IO = ItemIO<DT, ITEMS>;
  const ScanForwardParams &p = bp.fwd;
  IO::load(p.u, at, count, vectorized, u);
  IO::load(p.delta, at, count, vectorized, dt);
  IO::load(bp.dout, at, count, vectorized, dy);
  if (hasZ) {
    float z[ITEMS];
    IO::load(p.z, at, count, vectorized, z);
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) dy[i] *= silu(z[i]);
  }
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) dt[i] = deltaToDt(dt[i], bias, p.deltaSoftplus);
}

// Packed sequences (cu non-null): the lane's steps that start a sequence (`resets`), the sequence
// of each such step (startedAt) and the one that ends just before it (endedAt; -1 at step 0 and
// where no sequence starts).
template <int ITEMS>
__device__ __forceinline__ void findPackedStarts(const int32_t *cu, int64_t sequences, int64_t laneT0, int count,
                                                 unsigned &resets, int64_t (&startedAt)[ITEMS],
                                                 int64_t (&endedAt)[ITEMS]) {
#pragma unroll
  for (int i = 0; i < ITEMS; ++i) startedAt[i] = endedAt[i] = -1;
  if (cu) {
    int64_t s = count > 0 ? firstOffsetAbove(cu, sequences, laneT0) - 1 : 0;
#pragma unroll
    for (int i = 0; i < ITEMS; ++i) {
      if (i < count) {
        const int64_t t = laneT0 + i;
        const int64_t before = s;
        while (cu[s + 1] <= t) ++s;
        if (cu[s] == t) {
          resets |= 1u << i;
          startedAt[i] = s;
          endedAt[i] = t == 0 ? -1 : i > 0 ? before : firstOffsetAbove(cu, sequences, t - 1) - 1;
        }
      }
    }
  }
}

// kPacked: cuSeqlens is given (a template parameter so that the kernels without packed sequences
// carry none of their code: as a run-time branch it cost the 4-step kernel 13 % more instructions
// per element-state and some spills).
template <DType DT, int ITEMS, bool kPacked>
__global__ void __launch_bounds__(kBackwardThreads, kBackwardMinBlocksPerSM)
    scanBackwardKernel(const BackwardArgs args) {
  using IO = ItemIO<DT, ITEMS>;
  using Reduction = ReductionShape<ITEMS>;
  constexpr int kChunk = kWarpSize * ITEMS;
  static_assert(kChunk <= kBackwardThreads, "the R-warp reduction gives each thread one step");
  extern __shared__ float4 sharedMemory4[];  // float4: the table's 16-byte loads need the alignment
  float *const sharedMemory = reinterpret_cast<float *>(sharedMemory4);

  const ScanBackwardParams &bp = args.p;
  const ScanForwardParams &p = bp.fwd;
  const BackwardLayout &layout = args.layout;
  const int lane = laneIndex(), warp = warpIndex();
  const int64_t batch = p.shape.batch, dim = p.shape.dim, L = p.shape.seqlen;
  const int N = int(p.shape.dstate);
  const bool varyingB = p.B.varying(), varyingC = p.C.varying();
  const bool hasZ = p.z != nullptr;
  // The R-warp reductions of this launch: slot 0 is dB's when summed, then dC's.
  const bool reduceB = args.dBVarying != nullptr, reduceC = args.dCVarying != nullptr;
  const int reductions = int(reduceB) + int(reduceC);
  const int slotC = reduceB ? 1 : 0;

  float *const reduction = sharedMemory;  // [2 phases][reductions][Reduction::kFloats]
  float *const table = sharedMemory + 2 * reductions * Reduction::kFloats + warp * N * kTableStride;
  int phase = 0;  // which half of the reduction buffer the next state channel uses

  for (int64_t work = blockIdx.x; work < layout.workItems; work += gridDim.x) {
    const int64_t partitionInCell = work % layout.partitionsPerCell;
    const int64_t cell = (work / layout.partitionsPerCell) % layout.cells;
    const int64_t b = work / (layout.partitionsPerCell * layout.cells);
    const int64_t partition = cell * layout.partitionsPerCell + partitionInCell;
    const int64_t cellStart = cell * layout.cellSize;
    const int64_t partitionStart = cellStart + partitionInCell * layout.partitionSize;
    const int64_t partitionEnd = std::min(partitionStart + layout.partitionSize, cellStart + layout.cellSize);
    // The start of this cell's (n = 0) rows in varying B / C, and where the block's sums of
    // dB / dC go (+ n * L + t).
    const int64_t startB = varyingB ? (b * p.B.groups + partitionStart / (dim / p.B.groups)) * N * L : 0;
    const int64_t startC = varyingC ? (b * p.C.groups + partitionStart / (dim / p.C.groups)) * N * L : 0;
    float *const sumsB = !reduceB           ? nullptr
                         : bp.deterministic ? args.dBVarying + (partition * batch + b) * N * L
                                            : args.dBVarying + startB;
    float *const sumsC = !reduceC           ? nullptr
                         : bp.deterministic ? args.dCVarying + (partition * batch + b) * N * L
                                            : args.dCVarying + startC;

    for (int64_t setStart = partitionStart; setStart < partitionEnd; setStart += kBackwardWarps) {
      const bool firstSet = setStart == partitionStart;
      // A warp past the partition's end runs with no steps (count = 0): it loads and stores
      // nothing, contributes zeros, and still reaches every __syncthreads of the block.
      const int64_t d = setStart + warp;
      const bool active = d < partitionEnd;
      const int64_t row = b * dim + d;
      const int64_t rowStart = row * L;
      const float bias = active && p.deltaBias ? p.deltaBias[d] : 0.0f;
      const float Dd = active && p.D ? p.D[d] : 0.0f;

      // Packed sequences (batch 1, row = d): the row's last chunk starts from the dLastState of the
      // last non-empty sequence; a chunk's steps that start a sequence are resets of both scans.
      const int32_t *const cu = kPacked ? p.cuSeqlens : nullptr;
      const int64_t lastStateRow = cu ? (firstOffsetAbove(cu, p.sequences, L - 1) - 1) * dim + d : row;

      __syncwarp();  // the previous row's last reads of the table are done
      for (int n = lane; n < N; n += kWarpSize) {
        float *const entry = table + n * kTableStride;
        entry[kSlotA] = active ? p.A[d * N + n] : 0.0f;
        entry[kSlotK] = active && bp.dLastState ? bp.dLastState[lastStateRow * N + n] : 0.0f;
        entry[kSlotDA] = 0.0f;
        entry[kSlotB] = active && !varyingB ? static_cast<const float *>(p.B.data)[d * N + n] : 0.0f;
        entry[kSlotC] = active && !varyingC ? static_cast<const float *>(p.C.data)[d * N + n] : 0.0f;
        entry[kSlotDB] = entry[kSlotDC] = 0.0f;
      }
      float dDLane = 0.0f, ddeltaBiasLane = 0.0f;  // this lane's sums over its steps

      for (int64_t c = args.chunks - 1; c >= 0; --c) {
        loadChunkStart(args, table, lane, N, row, active, cu, c);

        const int64_t t0 = c * kChunk, laneT0 = t0 + lane * ITEMS;
        const int count = active ? int(std::min<int64_t>(std::max<int64_t>(L - laneT0, 0), ITEMS)) : 0;
        const bool vectorized = args.vectorized && active && t0 + kChunk <= L;

        // Per step: u, dt, dy = dout silu(z) (dout without z); accumulators of du, d dt and (for
        // dz) y = sum_n C h.
        float u[ITEMS], dt[ITEMS], dy[ITEMS], du[ITEMS], ddt[ITEMS], y[ITEMS];
        loadChunkSteps<DT, ITEMS>(bp, rowStart + laneT0, count, vectorized, hasZ, bias, u, dt, dy);
#pragma unroll
        for (int i = 0; i < ITEMS; ++i) du[i] = ddt[i] = y[i] = 0.0f;
        // Packed sequences: the lane's steps that start a sequence (`resets`), the sequence of each
        // such step and the one that ends just before it (-1 at step 0).
        unsigned resets = 0;
        int64_t startedAt[ITEMS], endedAt[ITEMS];
        findPackedStarts(cu, p.sequences, laneT0, count, resets, startedAt, endedAt);

        for (int n = 0; n < N; ++n) {
          float *const entry = table + n * kTableStride;
          const float4 state = *reinterpret_cast<const float4 *>(entry);  // A, K, hStart, dA
          const float An = state.x, A2n = An * kLog2e;
          float Bn[ITEMS], Cn[ITEMS];
          if (varyingB) {
            IO::load(p.B.data, startB + int64_t(n) * L + laneT0, count, vectorized, Bn);
          } else {
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) Bn[i] = entry[kSlotB];
          }
          if (varyingC) {
            IO::load(p.C.data, startC + int64_t(n) * L + laneT0, count, vectorized, Cn);
          } else {
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) Cn[i] = entry[kSlotC];
          }

          // The chunk's states, recomputed as the forward does (padding steps: identity pairs).
          float a[ITEMS], h[ITEMS], cdy[ITEMS];
          {
            float bx[ITEMS];
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) {
              const bool real = i < count;
              a[i] = real ? exp2f(dt[i] * A2n) : 1.0f;
              bx[i] = real ? dt[i] * u[i] * Bn[i] : 0.0f;
            }
            if (resets) {
              // A start's state is a init + dt B u, init the sequence's initial state (else 0).
#pragma unroll
              for (int i = 0; i < ITEMS; ++i) {
                if ((resets >> i) & 1u) {
                  const float init = p.initialState ? p.initialState[(startedAt[i] * dim + d) * N + n] : 0.0f;
                  bx[i] = a[i] * init + bx[i];
                }
              }
            }
            if (cu)
              warpChunkStatesPacked(a, bx, resets, state.z, lane, h);
            else
              warpChunkStates(a, bx, state.z, lane, h);
          }
          if (hasZ) {
#pragma unroll
            for (int i = 0; i < ITEMS; ++i) y[i] += Cn[i] * h[i];
          }

          // The adjoint, backwards: g_t = C_t dy_t + K_t, K_{t-1} = a_t g_t.
#pragma unroll
          for (int i = 0; i < ITEMS; ++i) cdy[i] = i < count ? Cn[i] * dy[i] : 0.0f;
          // At a start, K into the previous step is the dLastState of the sequence ending there.
          float resetK[ITEMS];
#pragma unroll
          for (int i = 0; i < ITEMS; ++i)
            resetK[i] = ((resets >> i) & 1u) && endedAt[i] >= 0 && bp.dLastState
                            ? bp.dLastState[(endedAt[i] * dim + d) * N + n]
                            : 0.0f;
          float K = cu ? warpChunkReverseCarryPacked(a, cdy, resets, resetK, state.y, lane)
                       : warpChunkReverseCarry(a, cdy, state.y, lane);
          float *const stepsB = reduction + ((phase * reductions) * kBackwardWarps + warp) * Reduction::kWarpStride +
                                lane * Reduction::kPad;
          float *const stepsC = stepsB + slotC * Reduction::kFloats;
          float dALane = 0.0f, dBLane = 0.0f, dCLane = 0.0f;
#pragma unroll
          for (int i = ITEMS - 1; i >= 0; --i) {
            const float g = cdy[i] + K;
            float dBStep = 0.0f, dCStep = 0.0f;
            if (i < count) {
              const StateGrads<float> grads = stateGrads(g, h[i], dt[i], u[i], An, Bn[i], dy[i]);
              ddt[i] += grads.ddt;
              du[i] += grads.du;
              dALane += grads.dA;
              dBStep = grads.dB;
              dCStep = grads.dC;
            }
            if (reduceB)
              stepsB[i] = dBStep;
            else
              dBLane += dBStep;
            if (reduceC)
              stepsC[i] = dCStep;
            else
              dCLane += dCStep;
            K = a[i] * g;
            if ((resets >> i) & 1u) {  // a start: K = a g is its sequence's dInitialState
              if (bp.dInitialState) bp.dInitialState[(startedAt[i] * dim + d) * N + n] = K;
              K = resetK[i];
            }
          }

          // This row's sums over time: lanes by a fixed butterfly, then chunk by chunk.
          const float dASum = warpSum(dALane);
          const float dBSum = varyingB ? 0.0f : warpSum(dBLane);
          const float dCSum = varyingC ? 0.0f : warpSum(dCLane);
          __syncwarp();  // every lane has read the entry
          if (lane == 0) {
            entry[kSlotK] = K;  // a_{t0} g_{t0} of the chunk's first step t0
            entry[kSlotDA] = state.w + dASum;
            if (!varyingB) entry[kSlotDB] += dBSum;
            if (!varyingC) entry[kSlotDC] += dCSum;
          }

          // Input-dependent dB / dC: sum the block's R rows in warp order, then into the sums.
          // Thread j of the block owns step j of the chunk (kChunk <= threads).
          if (reductions > 0) {
            __syncthreads();
            const int step = int(threadIdx.x);
            if (step < kChunk && t0 + step < L) {
              const int64_t at = int64_t(n) * L + t0 + step;
              const float *src =
                  reduction + phase * reductions * Reduction::kFloats + (step / ITEMS) * Reduction::kPad + step % ITEMS;
              if (reduceB) {
                accumulateStep(sumsB + at, sumOverWarps<Reduction>(src), bp.deterministic, firstSet);
                src += Reduction::kFloats;
              }
              if (reduceC) accumulateStep(sumsC + at, sumOverWarps<Reduction>(src), bp.deterministic, firstSet);
            }
            phase ^= 1;  // the next state channel writes the other half: one barrier per channel
          }
        }

        // The chunk's per-step gradients.
        float delta[ITEMS], dout[ITEMS], z[ITEMS];
        IO::load(p.delta, rowStart + laneT0, count, vectorized, delta);
        if (hasZ) {
          IO::load(bp.dout, rowStart + laneT0, count, vectorized, dout);
          IO::load(p.z, rowStart + laneT0, count, vectorized, z);
        }
#pragma unroll
        for (int i = 0; i < ITEMS; ++i) {
          du[i] += Dd * dy[i];
          ddt[i] = dtGradToDeltaGrad(ddt[i], delta[i], bias, p.deltaSoftplus);  // now d delta
          if (i < count) {
            dDLane += dy[i] * u[i];
            ddeltaBiasLane += ddt[i];
          }
          if (hasZ) y[i] = dout[i] * (y[i] + Dd * u[i]) * siluGrad(z[i]);  // now dz
        }
        if (bp.du) IO::store(bp.du, rowStart + laneT0, count, vectorized, du);
        if (bp.ddelta) IO::store(bp.ddelta, rowStart + laneT0, count, vectorized, ddt);
        if (hasZ && bp.dz) IO::store(bp.dz, rowStart + laneT0, count, vectorized, y);
      }

      // The row's results: dInitialState = K after chunk 0, and its sums over time.
      __syncwarp();  // the table's last writes are visible
      if (active) {
        for (int n = lane; n < N; n += kWarpSize) {
          const float *const entry = table + n * kTableStride;
          const int64_t at = row * N + n;
          if (bp.dInitialState && !cu) bp.dInitialState[at] = entry[kSlotK];
          if (args.dAPartial) args.dAPartial[at] = entry[kSlotDA];
          if (args.dBFixedPartial) args.dBFixedPartial[at] = entry[kSlotDB];
          if (args.dCFixedPartial) args.dCFixedPartial[at] = entry[kSlotDC];
        }
      }
      // An empty packed sequence: dInitialState = dLastState (0 without).
      if (active && cu && bp.dInitialState) {
        for (int64_t s = lane; s < p.sequences; s += kWarpSize) {
          if (cu[s] != cu[s + 1]) continue;
          for (int n = 0; n < N; ++n)
            bp.dInitialState[(s * dim + d) * N + n] = bp.dLastState ? bp.dLastState[(s * dim + d) * N + n] : 0.0f;
        }
      }
      const float dDSum = warpSum(dDLane), ddeltaBiasSum = warpSum(ddeltaBiasLane);
      if (lane == 0 && active) {
        if (args.dDPartial) args.dDPartial[row] = dDSum;
        if (args.ddeltaBiasPartial) args.ddeltaBiasPartial[row] = ddeltaBiasSum;
      }
    }
  }
}

// dA, fixed dB / dC (dim, N) and dD, ddeltaBias (dim): the per-row partials summed over the batch
// rows in increasing b. One thread per (d, n).
struct ChannelSumsArgs {
  int64_t batch = 0, dim = 0, N = 0;
  const float *dAPartial = nullptr, *dBFixedPartial = nullptr, *dCFixedPartial = nullptr;
  const float *dDPartial = nullptr, *ddeltaBiasPartial = nullptr;
  float *dA = nullptr, *dBFixed = nullptr, *dCFixed = nullptr, *dD = nullptr, *ddeltaBias = nullptr;
};

__global__ void reduceChannelSumsKernel(const ChannelSumsArgs args) {
  const int64_t perRow = args.dim * args.N;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < perRow; i += int64_t(gridDim.x) * blockDim.x) {
    float dA = 0.0f, dB = 0.0f, dC = 0.0f;
    for (int64_t b = 0; b < args.batch; ++b) {
      const int64_t at = b * perRow + i;
      if (args.dAPartial) dA += args.dAPartial[at];
      if (args.dBFixedPartial) dB += args.dBFixedPartial[at];
      if (args.dCFixedPartial) dC += args.dCFixedPartial[at];
    }
    if (args.dA) args.dA[i] = dA;
    if (args.dBFixed) args.dBFixed[i] = dB;
    if (args.dCFixed) args.dCFixed[i] = dC;
    if (i < args.dim) {
      float dD = 0.0f, ddeltaBias = 0.0f;
      for (int64_t b = 0; b < args.batch; ++b) {
        if (args.dDPartial) dD += args.dDPartial[b * args.dim + i];
        if (args.ddeltaBiasPartial) ddeltaBias += args.ddeltaBiasPartial[b * args.dim + i];
      }
      if (args.dD) args.dD[i] = dD;
      if (args.ddeltaBias) args.ddeltaBias[i] = ddeltaBias;
    }
  }
}

// Deterministic mode: out (batch, G, N, L) in the dtype = the sum of the partitions of each group,
// in increasing partition order, from partials [partition][batch][N][L]. The partitions of group
// g are the consecutive range [g, g + 1) * partitionsPerGroup (cells never straddle groups).
template <DType DT>
__global__ void reducePartitionsKernel(void *out, const float *partials, int64_t batch, int64_t groups, int64_t N,
                                       int64_t L, int64_t partitionsPerGroup) {
  using Storage = typename Element<DT>::Storage;
  const int64_t total = batch * groups * N * L, perPartition = batch * N * L;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t nt = i % (N * L);  // (n, t)
    const int64_t g = (i / (N * L)) % groups;
    const int64_t b = i / (groups * N * L);
    const float *src = partials + g * partitionsPerGroup * perPartition + b * N * L + nt;
    float sum = 0.0f;
#pragma unroll 4
    for (int64_t k = 0; k < partitionsPerGroup; ++k) sum += src[k * perPartition];
    static_cast<Storage *>(out)[i] = Element<DT>::store(sum);
  }
}

constexpr int kElementwiseThreads = 256;
// Grid of the element-wise kernels: enough blocks to fill any GPU; a grid-stride loop does the rest.
unsigned elementwiseBlocks(int64_t n) {
  return unsigned(std::min<int64_t>(std::max<int64_t>(ceilDiv(n, kElementwiseThreads), 1), 8192));
}

// Carves one scratch allocation into 256-byte aligned float arrays. With a null base it measures.
class ScratchCarver {
 public:
  explicit ScratchCarver(char *base) : base_(base) {}
  float *take(int64_t floats) {
    if (floats <= 0) return nullptr;
    used_ = (used_ + 255) / 256 * 256;
    float *p = base_ ? reinterpret_cast<float *>(base_ + used_) : nullptr;
    used_ += size_t(floats) * sizeof(float);
    return p;
  }
  size_t bytes() const { return used_; }

 private:
  char *base_;
  size_t used_ = 0;
};

// The scratch of one backward call; with a null base only the size is measured (bytes()).
struct BackwardScratch {
  float *dAPartial = nullptr, *dBFixedPartial = nullptr, *dCFixedPartial = nullptr;
  float *dDPartial = nullptr, *ddeltaBiasPartial = nullptr;
  float *dBVarying = nullptr, *dCVarying = nullptr;  // null where the output itself is used
  size_t bytes = 0;

  BackwardScratch(char *base, const ScanBackwardParams &bp, const BackwardLayout &layout) {
    const ScanForwardParams &p = bp.fwd;
    const int64_t batch = p.shape.batch, dim = p.shape.dim, N = p.shape.dstate, L = p.shape.seqlen;
    const int64_t rows = batch * dim;
    ScratchCarver carver(base);
    if (bp.dA) dAPartial = carver.take(rows * N);
    if (bp.dB && !p.B.varying()) dBFixedPartial = carver.take(rows * N);
    if (bp.dC && !p.C.varying()) dCFixedPartial = carver.take(rows * N);
    if (bp.dD) dDPartial = carver.take(rows);
    if (bp.ddeltaBias) ddeltaBiasPartial = carver.take(rows);
    const int64_t partitions = layout.cells * layout.partitionsPerCell;
    auto varyingBuffer = [&](const Projection &proj, void *out) -> float * {
      if (!out || !proj.varying()) return nullptr;
      if (bp.deterministic) return carver.take(partitions * batch * N * L);
      if (p.dtype == DType::Float32) return nullptr;  // atomics straight into the output
      return carver.take(batch * proj.groups * N * L);
    };
    dBVarying = varyingBuffer(p.B, bp.dB);
    dCVarying = varyingBuffer(p.C, bp.dC);
    bytes = carver.bytes();
  }
};

template <DType DT, int ITEMS, bool kPacked>
cudaError_t launchBackwardKernel(const BackwardArgs &args, cudaStream_t stream) {
  const int reductions = int(args.dBVarying != nullptr) + int(args.dCVarying != nullptr);
  const size_t sharedBytes = backwardSharedBytes<ITEMS>(reductions, args.p.fwd.shape.dstate);
  const void *kernel = reinterpret_cast<const void *>(&scanBackwardKernel<DT, ITEMS, kPacked>);
  SS_CUDA_TRY(allowSharedMemory(kernel, sharedBytes));
  scanBackwardKernel<DT, ITEMS, kPacked>
      <<<gridBlocks(args.layout.workItems), kBackwardThreads, sharedBytes, stream>>>(args);
  return cudaGetLastError();
}

template <DType DT, int ITEMS>
cudaError_t launchBackwardKernel(const BackwardArgs &args, cudaStream_t stream) {
  return args.p.fwd.cuSeqlens ? launchBackwardKernel<DT, ITEMS, true>(args, stream)
                              : launchBackwardKernel<DT, ITEMS, false>(args, stream);
}

template <DType DT>
cudaError_t launchReducePartitions(void *out, const float *partials, const ScanBackwardParams &bp,
                                   const Projection &proj, const BackwardLayout &layout, cudaStream_t stream) {
  const ScanShape &s = bp.fwd.shape;
  const int64_t cellsPerGroup = (s.dim / proj.groups) / layout.cellSize;
  const int64_t total = s.batch * proj.groups * s.dstate * s.seqlen;
  reducePartitionsKernel<DT><<<elementwiseBlocks(total), kElementwiseThreads, 0, stream>>>(
      out, partials, s.batch, proj.groups, s.dstate, s.seqlen, cellsPerGroup * layout.partitionsPerCell);
  return cudaGetLastError();
}

// Everything after the scratch allocation, queued in order on the stream.
cudaError_t queueBackward(const ScanBackwardParams &bp, const BackwardLayout &layout, const BackwardScratch &scratch,
                          int items, cudaStream_t stream) {
  const ScanForwardParams &p = bp.fwd;
  const int64_t batch = p.shape.batch, dim = p.shape.dim, N = p.shape.dstate, L = p.shape.seqlen;

  BackwardArgs args;
  args.p = bp;
  args.layout = layout;
  args.chunks = ceilDiv(L, p.chunkLength);
  args.dAPartial = scratch.dAPartial;
  args.dBFixedPartial = scratch.dBFixedPartial;
  args.dCFixedPartial = scratch.dCFixedPartial;
  args.dDPartial = scratch.dDPartial;
  args.ddeltaBiasPartial = scratch.ddeltaBiasPartial;

  // Where the input-dependent dB / dC are summed; default-mode sums start at zero.
  auto varyingSums = [&](const Projection &proj, void *out, float *buffer, float **sums) -> cudaError_t {
    *sums = nullptr;
    if (!out || !proj.varying()) return cudaSuccess;
    *sums = buffer ? buffer : static_cast<float *>(out);  // no buffer: float32 default mode
    if (bp.deterministic) return cudaSuccess;             // every element is written, row set 0 first
    return cudaMemsetAsync(*sums, 0, size_t(batch * proj.groups * N * L) * sizeof(float), stream);
  };
  SS_CUDA_TRY(varyingSums(p.B, bp.dB, scratch.dBVarying, &args.dBVarying));
  SS_CUDA_TRY(varyingSums(p.C, bp.dC, scratch.dCVarying, &args.dCVarying));

  SS_CUDA_TRY(dispatchDType(p.dtype, [&](auto dtype) {
    return dispatchItems<kMaxBackwardItems>(items, [&](auto itemsTag) {
      constexpr DType DT = decltype(dtype)::value;
      constexpr int ITEMS = decltype(itemsTag)::value;
      using IO = ItemIO<DT, ITEMS>;
      args.vectorized = IO::alignedRows(p.u, L) && IO::alignedRows(p.delta, L) && IO::alignedRows(bp.dout, L) &&
                        (!p.z || IO::alignedRows(p.z, L)) && (!bp.du || IO::alignedRows(bp.du, L)) &&
                        (!bp.ddelta || IO::alignedRows(bp.ddelta, L)) && (!bp.dz || IO::alignedRows(bp.dz, L)) &&
                        (!p.B.varying() || IO::alignedRows(p.B.data, L)) &&
                        (!p.C.varying() || IO::alignedRows(p.C.data, L));
      return launchBackwardKernel<DT, ITEMS>(args, stream);
    });
  }));

  ChannelSumsArgs sums;
  sums.batch = batch;
  sums.dim = dim;
  sums.N = N;
  sums.dAPartial = scratch.dAPartial;
  sums.dBFixedPartial = scratch.dBFixedPartial;
  sums.dCFixedPartial = scratch.dCFixedPartial;
  sums.dDPartial = scratch.dDPartial;
  sums.ddeltaBiasPartial = scratch.ddeltaBiasPartial;
  sums.dA = bp.dA;
  sums.dBFixed = scratch.dBFixedPartial ? static_cast<float *>(bp.dB) : nullptr;
  sums.dCFixed = scratch.dCFixedPartial ? static_cast<float *>(bp.dC) : nullptr;
  sums.dD = bp.dD;
  sums.ddeltaBias = bp.ddeltaBias;
  reduceChannelSumsKernel<<<elementwiseBlocks(dim * N), kElementwiseThreads, 0, stream>>>(sums);
  SS_CUDA_TRY(cudaGetLastError());

  // Input-dependent dB / dC in the dtype.
  auto finishVarying = [&](const Projection &proj, void *out, const float *sumsBuffer) -> cudaError_t {
    if (!out || !proj.varying()) return cudaSuccess;
    if (bp.deterministic) {
      return dispatchDType(p.dtype, [&](auto dtype) {
        return launchReducePartitions<decltype(dtype)::value>(out, sumsBuffer, bp, proj, layout, stream);
      });
    }
    if (p.dtype == DType::Float32) return cudaSuccess;  // summed in place
    return convert(out, p.dtype, sumsBuffer, DType::Float32, batch * proj.groups * N * L, stream);
  };
  SS_CUDA_TRY(finishVarying(p.B, bp.dB, scratch.dBVarying));
  SS_CUDA_TRY(finishVarying(p.C, bp.dC, scratch.dCVarying));
  return cudaSuccess;
}

}  // namespace

gpu::Status scanBackward(const ScanBackwardParams &bp, gpu::Stream stream) {
  const ScanForwardParams &p = bp.fwd;
  const ScanShape &s = p.shape;
  SS_CUDA_TRY(checkScanShape(p));
  if (isEmptyScan(s)) return cudaSuccess;
  // One checkpoint interval (chunkLength = 64 or 128 steps, see scanChunkLength) is one
  // chunk of the backward: ITEMS = chunkLength / 32.
  int items = 0;
  for (int candidate = kMinItems; candidate <= kMaxBackwardItems; candidate *= 2)
    if (p.chunkLength == int64_t(kWarpSize) * candidate) items = candidate;
  if (items == 0) return cudaErrorInvalidValue;
  if (!p.checkpoints && s.seqlen > p.chunkLength) return cudaErrorInvalidValue;
  if (!bp.dout) return cudaErrorInvalidValue;

  const BackwardLayout layout = backwardLayout(p, bp.deterministic);
  const BackwardScratch measured(nullptr, bp, layout);
  char *base = nullptr;
  if (measured.bytes > 0) SS_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void **>(&base), measured.bytes, stream));
  const BackwardScratch scratch(base, bp, layout);
  const cudaError_t queued = queueBackward(bp, layout, scratch, items, stream);
  const cudaError_t freed = base ? cudaFreeAsync(base, stream) : cudaSuccess;
  return queued != cudaSuccess ? queued : freed;
}

}  // namespace ss::cuda
