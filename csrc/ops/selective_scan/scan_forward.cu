// The forward selective scan on the GPU.
//
// Kernel design (scanForwardKernel<DT, ITEMS, kPackedSequences>):
//  - One warp per (batch, channel) row, kForwardWarps independent rows per block, a grid-stride
//    loop over rows: short sequences still fill the GPU (mamba_ssm uses a whole block per row), and
//    no grid dimension limits batch or dim. Warps never synchronise with each other.
//  - Time is cut into chunks of kChunk = 32 * ITEMS steps; lane l owns ITEMS consecutive steps of
//    the chunk. ITEMS is the fewest of 2, 4, 8 that hold the sequence in one chunk, else 16 for
//    16-bit inputs on the full-chunk path (below), else 8: more steps per lane spread the warp
//    scan's fixed cost (about 25 instructions per state channel) over more element·states.
//  - Per chunk, the N state channels in turn: pairs (a_t, dt_t B_t u_t) with a_t = exp2(dt_t A2)
//    (exp2Ftz: one ex2.approx.ftz), composed along each lane's steps, a warp scan of the lanes'
//    pairs (five shuffle steps, predicated rather than branched) seeded by the state carried from
//    the previous chunk, then y_t += C_t h_t. The carry of each state channel lives in shared
//    memory, double-buffered by chunk parity so that one __syncwarp per chunk orders every read of
//    the old carry before the write of the new one.
//  - Two paths per chunk, chosen outside the state loop:
//    full-chunk path: every step real, input-dependent B and C, every row vector-aligned (the
//      host checks; then every chunk but a partial last one takes it). The state loop has no
//      per-step select and no count: running pointers over B, C and the shared arrays, B_t and
//      C_t as raw 16-byte vectors loaded at the top of the loop and widened where used. Up to 8
//      steps per lane, each lane replays its steps after the warp scan (warpChunkStates); at 16,
//      it runs them once from a zero state before the scan (local states hl_t, y_t += C_t hl_t,
//      w_t = C_t times the decays so far) and adds w_t s once the scan gives the state s entering
//      the lane: 16 registers live through the scan instead of the 32 of a replay, which is what
//      lets a lane own 16 steps in 128 registers without spilling.
//    any chunk (the partial last one, unaligned rows, fixed B or C), in chunks of at most 8 steps
//      per lane (the 16-step kernel runs only full-chunk rows, and their partial last chunk in
//      chunks of 2 steps per lane: more would spill): element or vector loads with a count,
//      padding steps as the identity pair (1, 0), fixed B / C from shared memory, the lanes'
//      steps replayed after the scan (warpChunkStates).
//  - Checkpoints (h at the last real step of every checkpoint interval, for the backward) every
//    chunkLength = min(kChunk, kMaxCheckpointInterval) steps: a chunk holds 1, 2 or 4 intervals
//    (or lies in one: the 16-step kernel's last chunk runs in chunks of 64 steps);
//    the lane that ends one (lane 31 for the last) stores its end state every state channel, into
//    the next carry or into intervalEnds (the other lanes into a row nobody reads: no branch), and
//    the warp copies them out after the state loop. The interval is capped because the backward,
//    which works one interval at a time with the same layout, needs about 200 registers per
//    thread at 8 steps per lane (about 128 at 4).
//  - Packed sequences (cuSeqlens), in kernels of their own (kPackedSequences, 8 steps per lane for
//    every L: kPackedForwardItems): one binary search per chunk finds whether a sequence starts at
//    the chunk's first step (then the carry is replaced by its initial state, after being written
//    as the lastState of the sequence ending there: the chunk keeps its path) or strictly inside
//    (then the chunk runs as chunks of 2 steps per lane, those with a start inside on the packed
//    path: the any-chunk path whose warp scan treats a start as a reset flag, a select and never
//    a multiply by 0, so an Inf or NaN never crosses a boundary; at 8 steps per lane that path
//    spilled far more). Chunks without a start inside keep their path, the full-chunk one
//    unchanged (ptxas now reports a few spills in the 8- and 16-step kernels, outside the state
//    loop: the executed count of the full chunk's state loop is as before). The
//    checkpoints are unchanged: the state after the interval's last step, of its sequence.
//  - Then out = (y + D u) silu(z), rounded once to the dtype. After the last chunk the carry is
//    the last state.
//  - ITEMS (the chunk length), the dtype and kPackedSequences are the only template parameters
//    (11 kernels without packed sequences, 3 with); every other option is a run-time branch that
//    is uniform over the warp, outside the state loop of the full-chunk path.
#include <algorithm>
#include <type_traits>

#include "scan_cuda.cuh"

namespace ss::cuda {
namespace {

constexpr int kForwardWarps = 4;  // rows (warps) per block
constexpr int kForwardThreads = kForwardWarps * kWarpSize;
// Blocks per SM the register allocation must allow (4 x 128 threads: at most 128 registers per
// thread, 25 % occupancy).
constexpr int kForwardMinBlocksPerSM = 4;

// The checkpoint interval never exceeds this many steps (see the file comment).
constexpr int kMaxCheckpointInterval = 128;
// Steps per lane of the longest chunk: 16 for 16-bit inputs (512-step chunks), 8 for float32,
// whose B / C vectors take twice the registers (at 16, ptxas spills within the 128 it has).
constexpr int kMaxForwardItems = 16;
constexpr int maxForwardItems(DType t) { return t == DType::Float32 ? 8 : kMaxForwardItems; }
// Packed sequences (cuSeqlens) run in one kernel per dtype, at 8 steps per lane whatever L is. Their
// code (a binary search per chunk, chunks of 2 steps per lane around a start, the reset-aware warp
// scan) was three quarters of this file's compile time while every ITEMS instance carried it
// (sm_90: 44.7 CPU-seconds for the file, 10.2 without it). At 8 steps per lane the checkpoint
// layout is the one scanChunkLength gives for every L: 128-step intervals, and below 65 steps a
// single checkpoint, whatever the interval.
constexpr int kPackedForwardItems = 8;

// Steps per lane of the forward for a sequence length: the fewest that make one chunk hold the
// whole sequence, else the dtype's longest chunk.
int forwardItems(int64_t L, DType t) {
  for (int items : {kMinItems, 4, 8})
    if (L <= int64_t(kWarpSize) * items) return items;
  return maxForwardItems(t);
}

// Checkpoint intervals per chunk of 32 * items steps: 1 up to 128 steps, else 2 or 4.
constexpr int intervalsPerChunk(int items) {
  return kWarpSize * items > kMaxCheckpointInterval ? kWarpSize * items / kMaxCheckpointInterval : 1;
}

struct ForwardArgs {
  ScanForwardParams p;
  int64_t rows = 0;         // batch * dim
  int64_t fastSteps = 0;    // the leading steps that take the full-chunk path (whole chunks)
  int64_t checkpoints = 0;  // ceil(L / chunkLength): checkpoint intervals per row
  int64_t sharedFloatsPerWarp = 0;
  bool vectorized = false;  // every (batch, dim, L) and varying B/C row is vector-aligned
};

// Shared memory of one warp, in floats: A2 = A log2(e) [N], fixed B [N] and C [N] when given
// fixed, the carried states [2][N] (double-buffered by chunk parity), the states at the ends of
// the chunk's checkpoint intervals but the last [intervals - 1][N], and a row [N] that the lanes
// ending no interval write their end states to (never read: the store needs no branch).
int64_t forwardSharedFloatsPerWarp(const ScanForwardParams &p, int items) {
  const int64_t N = p.shape.dstate;
  return N * (4 + (intervalsPerChunk(items) - 1) + (p.B.varying() ? 0 : 1) + (p.C.varying() ? 0 : 1));
}

// The three per-chunk paths (see the file comment): full-chunk, any chunk, and any chunk with a
// packed-sequence start strictly inside it.
enum class Path { Full, Any, Packed };
template <Path kPath>
using PathTag = std::integral_constant<Path, kPath>;

// IO::loadPack for the full-chunk path's two 16-byte vectors (16 steps of a 16-bit type), the
// second one's offset inside its load instruction: __ldg's inline assembly takes a computed
// address for each, one more add per vector. The emulator (and any other shape) takes loadPack.
template <class IO>
__device__ __forceinline__ typename IO::Pack loadPackFolded(const typename IO::Storage *p) {
#if defined(__NVCC__) && defined(__CUDA_ARCH__)
  if constexpr (sizeof(typename IO::Vector) == 16 && IO::kVectors == 2) {
    typename IO::Pack pack;
    uint4 &v0 = pack.vectors[0], &v1 = pack.vectors[1];
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%8];\n\t"
        "ld.global.nc.v4.u32 {%4, %5, %6, %7}, [%8+16];"
        : "=r"(v0.x), "=r"(v0.y), "=r"(v0.z), "=r"(v0.w), "=r"(v1.x), "=r"(v1.y), "=r"(v1.z), "=r"(v1.w)
        : "l"(p));
    return pack;
  }
#endif
  return IO::loadPack(p);
}

// Steps per lane of the any-chunk path: at most 8; 2 in the 16-step kernel, where it only runs
// the partial last chunk (beside the full-chunk path's registers, 4 already spills).
constexpr int anyChunkItems(int items) { return items <= 8 ? items : 2; }

// ---- The stages of scanForwardKernel ----------------------------------------------------------
//
// Stages of the kernel's chunk and row, named after the CPU backend's forwardTask where one fits.
// They are force-inlined, and they take plain values: nvcc simplifies a function on its own before
// inlining it, so a new boundary can change the kernel's code. Each of these was checked against
// kernel-stats for every instantiation (the same registers, spills and state-loop instruction
// counts), including the order in which they read their inputs (D read before u, as a call's
// argument, cost the float32 4-step kernel 4 registers). The state loops stay in the chunk lambda,
// as does the row's shared-memory setup: split out, it changed the spills of the 8- and 16-step
// kernels (64 -> 40 and 48 -> 28 bytes stored), and so did a whole-kernel split into a struct of
// stages (registers and state-loop counts too).

// A chunk's inputs from `at` (the CPU's gathers and its deltaToDt loop): dt = softplus(delta +
// bias) (or delta + bias) and dt u, per step of the lane.
template <DType DT, int I>
__device__ __forceinline__ void loadChunkInputs(const ScanForwardParams &p, int64_t at, int count, bool vectorized,
                                                float bias, float (&dt)[I], float (&dtu)[I]) {
  using IO = ItemIO<DT, I>;
  IO::load(p.u, at, count, vectorized, dtu);
  IO::load(p.delta, at, count, vectorized, dt);
#pragma unroll
  for (int i = 0; i < I; ++i) {
    dt[i] = deltaToDt(dt[i], bias, p.deltaSoftplus);
    dtu[i] *= dt[i];
  }
}

// After a chunk's state loop: the checkpoints of the intervals that end in the chunk (the states
// at their ends, for the backward), copied out of carryOut (the last) and intervalEnds (the
// others). A chunk shorter than a checkpoint interval (the 16-step kernel's last one) ends the
// interval it lies in only at the interval's end, or at L.
template <int kChunk, int kIntervalsPerChunk, int kIntervalSteps>
__device__ __forceinline__ void writeCheckpoints(const ScanForwardParams &p, int64_t checkpointsPerRow, int lane, int N,
                                                 int64_t L, int64_t row, int64_t t0, const float *carryOut,
                                                 const float *intervalEnds) {
  const bool endsIntervals = kChunk >= kIntervalSteps || (t0 + kChunk) % kIntervalSteps == 0 || t0 + kChunk >= L;
  if (p.checkpoints && endsIntervals) {
    // Intervals k0 .. k0 + kIntervalsPerChunk - 1 end in this chunk; the last ones may lie past L.
    const int64_t k0 = t0 / kIntervalSteps;
    float *const checkpoint = p.checkpoints + (row * checkpointsPerRow + k0) * N;
    const int intervals = int(std::min<int64_t>(kIntervalsPerChunk, checkpointsPerRow - k0));
    for (int k = 0; k < intervals; ++k) {
      const float *const end = k == kIntervalsPerChunk - 1 ? carryOut : intervalEnds + k * N;
      for (int n = lane; n < N; n += kWarpSize) checkpoint[k * N + n] = end[n];
    }
    // These reads of intervalEnds are done before the next chunk's state loop rewrites it
    // (otherwise ordered only by that loop's shuffles).
    if (kIntervalsPerChunk > 1) __syncwarp();
  }
}

// The epilogue of a chunk of channel d, from `at` (the CPU's output loop): out = (y + D u) silu(z), rounded
// once to the dtype. u is loaded again (an L1 hit) rather than held in registers through the
// state loop.
template <DType DT, int I>
__device__ __forceinline__ void writeChunkOutput(const ScanForwardParams &p, int64_t d, int64_t at, int count,
                                                 bool vectorized, float (&y)[I]) {
  using IO = ItemIO<DT, I>;
  float u[I], z[I];
  IO::load(p.u, at, count, vectorized, u);
  if (p.z) IO::load(p.z, at, count, vectorized, z);
  const float Dd = p.D ? p.D[d] : 0.0f;
#pragma unroll
  for (int i = 0; i < I; ++i) {
    y[i] += Dd * u[i];
    if (p.z) y[i] *= silu(z[i]);
  }
  IO::store(p.out, at, count, vectorized, y);
}

// After the row's last chunk, the carry (carries[parity]) is the last state. With packed
// sequences: the last non-empty sequence's (L > 0 here), and every empty one's is its initial
// state (0 without).
__device__ __forceinline__ void writeLastStates(const ScanForwardParams &p, int lane, int N, int64_t dim, int64_t L,
                                                int64_t row, int64_t d, const int32_t *cu, const float *finalCarry) {
  const int64_t last = cu ? (firstOffsetAbove(cu, p.sequences, L - 1) - 1) * dim + d : row;
  for (int n = lane; n < N; n += kWarpSize) p.lastState[last * N + n] = finalCarry[n];
  if (cu) {
    for (int64_t s = lane; s < p.sequences; s += kWarpSize) {
      if (cu[s] != cu[s + 1]) continue;
      for (int n = 0; n < N; ++n)
        p.lastState[(s * dim + d) * N + n] = p.initialState ? p.initialState[(s * dim + d) * N + n] : 0.0f;
    }
  }
}

template <DType DT, int ITEMS, bool kPackedSequences>
__global__ void __launch_bounds__(kForwardThreads, kForwardMinBlocksPerSM) scanForwardKernel(const ForwardArgs args) {
  constexpr int kMaxIntervals = intervalsPerChunk(ITEMS);
  constexpr int kIntervalSteps = kWarpSize * ITEMS / kMaxIntervals;  // the checkpoint interval, chunkLength
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
  float *const carries = shared;                                    // [2][N]
  float *const intervalEnds = shared + 2 * N;                       // [kMaxIntervals - 1][N]
  float *const discarded = intervalEnds + (kMaxIntervals - 1) * N;  // [N]

  for (int64_t row = int64_t(blockIdx.x) * kForwardWarps + warp; row < args.rows;
       row += int64_t(gridDim.x) * kForwardWarps) {
    const int64_t d = row % dim;

    __syncwarp();  // the previous row's last reads of shared memory are done
    for (int n = lane; n < N; n += kWarpSize) {
      A2[n] = p.A[d * N + n] * kLog2e;
      if (!varyingB) fixedB[n] = static_cast<const float *>(p.B.data)[d * N + n];
      if (!varyingC) fixedC[n] = static_cast<const float *>(p.C.data)[d * N + n];
      // With packed sequences the first chunk's start sets it (initialState has a row per sequence).
      carries[n] = p.initialState && !p.cuSeqlens ? p.initialState[row * N + n] : 0.0f;
    }
    __syncwarp();

    // One chunk of 32 * I steps from step t0, the carry in carries[parity]; kFull selects the
    // full-chunk path (see the file comment).
    auto chunk = [&](int64_t t0, int parity, auto pathTag, auto itemsTag) {
      constexpr bool kFull = decltype(pathTag)::value == Path::Full;
      constexpr bool kPacked = decltype(pathTag)::value == Path::Packed;
      constexpr int I = decltype(itemsTag)::value;
      using IO = ItemIO<DT, I>;
      using Storage = typename IO::Storage;
      constexpr int kChunk = kWarpSize * I;
      constexpr int kIntervalsPerChunk = intervalsPerChunk(I);
      constexpr int kLanesPerInterval = kWarpSize / kIntervalsPerChunk;
      // The row's offsets, computed again for every chunk rather than held through the state
      // loop in registers (at 16 steps per lane it needs all but a few of its 128).
      const int64_t b = row / dim, d = row - b * dim;
      const int64_t rowStart = row * L;  // of u, delta, z, out
      // Start of the (n = 0) row of this channel's varying B / C group.
      const int64_t startB = varyingB ? (b * p.B.groups + d / (dim / p.B.groups)) * N * L : 0;
      const int64_t startC = varyingC ? (b * p.C.groups + d / (dim / p.C.groups)) * N * L : 0;
      const float bias = p.deltaBias ? p.deltaBias[d] : 0.0f;
      const int64_t laneT0 = t0 + lane * I;
      const int count = kFull ? I : int(std::min<int64_t>(std::max<int64_t>(L - laneT0, 0), I));
      const bool vectorized = kFull || (args.vectorized && t0 + kChunk <= L);

      float dt[I], dtu[I], y[I];
      loadChunkInputs<DT, I>(p, rowStart + laneT0, count, vectorized, bias, dt, dtu);
#pragma unroll
      for (int i = 0; i < I; ++i) y[i] = 0.0f;

      const float *const carryIn = carries + parity * N;
      float *const carryOut = carries + (parity ^ 1) * N;
      // Every lane stores its end state every state channel: the lanes that end a checkpoint
      // interval into the next carry (lane 31) or intervalEnds, the others into `discarded`.
      const int laneInterval = lane / kLanesPerInterval;
      float *const endSlot = lane % kLanesPerInterval != kLanesPerInterval - 1 ? discarded
                             : laneInterval == kIntervalsPerChunk - 1          ? carryOut
                                                                               : intervalEnds + laneInterval * N;

      if constexpr (kFull) {
        // Varying B and C, aligned, every step real: running pointers, raw vector loads widened
        // where used, no per-step selects.
        const Storage *Bn = static_cast<const Storage *>(p.B.data) + startB + laneT0;
        const Storage *Cn = static_cast<const Storage *>(p.C.data) + startC + laneT0;
        const float *A2n = A2, *carryInN = carryIn;
        const float *const A2end = A2 + N;
        float *endSlotN = endSlot;
        for (; A2n != A2end; Bn += L, Cn += L, ++A2n, ++carryInN, ++endSlotN) {
          const typename IO::Pack Bv = loadPackFolded<IO>(Bn), Cv = loadPackFolded<IO>(Cn);
          const float A2v = *A2n;
          const float carry = *carryInN;
          if constexpr (I <= 8) {
            // The pairs, then warpChunkStates: the lane composes them, the warp scans, the lane
            // replays its steps from the state entering it.
            float a[I], bx[I], h[I];
#pragma unroll
            for (int i = 0; i < I; ++i) {
              a[i] = exp2Ftz(dt[i] * A2v);
              // Rounded once and never contracted: the composition and the replay both use it
              // (contracted into the composition's FMA, it would be computed twice).
              bx[i] = __fmul_rn(dtu[i], IO::item(Bv, i));
            }
            *endSlotN = warpChunkStates(a, bx, carry, lane, h);
#pragma unroll
            for (int i = 0; i < I; ++i) y[i] += IO::item(Cv, i) * h[i];
          } else {
            // One pass over the lane's steps from a zero state: the local states hl_i (the
            // lane's composed pair ends as (P, hl) of its last step), y_i += C_i hl_i at once, and
            // w_i = C_i P_i with P_i the product of the decays so far; once the warp scan gives
            // the state s entering the lane, h_i = hl_i + P_i s, so y_i += w_i s. Only w stays
            // live through the scan (16 registers, where a replay would hold the 32 of a and
            // dt B u): one instruction more per step, and no spill at 16 steps per lane.
            float w[I];
            Pair composed;
#pragma unroll
            for (int i = 0; i < I; ++i) {
              const float a = exp2Ftz(dt[i] * A2v);
              const float bx = __fmul_rn(dtu[i], IO::item(Bv, i));  // as above
              composed = i == 0 ? Pair{a, bx} : scanCombine(composed, Pair{a, bx});
              const float C = IO::item(Cv, i);
              y[i] += C * composed.b;
              w[i] = C * composed.a;
            }
            const float laneEnd = applyPair(warpInclusiveScan(composed, lane), carry);
            *endSlotN = laneEnd;
            const float entering = shiftUpOneLane(laneEnd, carry, lane);
#pragma unroll
            for (int i = 0; i < I; ++i) y[i] += w[i] * entering;
          }
        }
      } else {
        // Packed sequences (kPacked): the lane's steps that start a sequence after the chunk's
        // first step (`resets`), those that end one before the chunk's last step (`ends`: its
        // lastState is written here; a sequence ending at a chunk's last step is written at the
        // next chunk or after the row), and the sequence of each step.
        unsigned resets = 0, ends = 0;
        int seqOf[kPacked ? I : 1];  // int: cuSeqlens holds int32 offsets, so fewer sequences
        if constexpr (kPacked) {
          const int32_t *const cu = p.cuSeqlens;
          const int64_t chunkEnd = std::min<int64_t>(t0 + kChunk, L);
          int64_t s = count > 0 ? firstOffsetAbove(cu, p.sequences, laneT0) - 1 : 0;
#pragma unroll
          for (int i = 0; i < I; ++i) {
            seqOf[i] = 0;
            if (i < count) {
              const int64_t t = laneT0 + i;
              while (cu[s + 1] <= t) ++s;
              seqOf[i] = int(s);
              if (t > t0 && cu[s] == t) resets |= 1u << i;
              if (t + 1 < chunkEnd && cu[s + 1] == t + 1) ends |= 1u << i;
            }
          }
        }
        // Any chunk: fixed or varying B / C, vector or element loads, padding steps as the
        // identity pair.
        for (int n = 0; n < N; ++n) {
          float Bv[I], Cv[I];
          if (varyingB) {
            IO::load(p.B.data, startB + int64_t(n) * L + laneT0, count, vectorized, Bv);
          } else {
#pragma unroll
            for (int i = 0; i < I; ++i) Bv[i] = fixedB[n];
          }
          if (varyingC) {
            IO::load(p.C.data, startC + int64_t(n) * L + laneT0, count, vectorized, Cv);
          } else {
#pragma unroll
            for (int i = 0; i < I; ++i) Cv[i] = fixedC[n];
          }
          const float A2n = A2[n];
          float a[I], bx[I], h[I];
#pragma unroll
          for (int i = 0; i < I; ++i) {
            const bool real = i < count;  // padding steps are the identity pair
            a[i] = real ? exp2Ftz(dt[i] * A2n) : 1.0f;
            bx[i] = real ? __fmul_rn(dtu[i], Bv[i]) : 0.0f;
          }
          if constexpr (kPacked) {
            // A start's state is a init + dt B u, init the sequence's initial state (else 0).
#pragma unroll
            for (int i = 0; i < I; ++i) {
              if ((resets >> i) & 1u) {
                const float init = p.initialState ? p.initialState[(int64_t(seqOf[i]) * dim + d) * N + n] : 0.0f;
                bx[i] = a[i] * init + bx[i];
              }
            }
            endSlot[n] = warpChunkStatesPacked(a, bx, resets, carryIn[n], lane, h);
            if (p.lastState) {
#pragma unroll
              for (int i = 0; i < I; ++i)
                if ((ends >> i) & 1u) p.lastState[(int64_t(seqOf[i]) * dim + d) * N + n] = h[i];
            }
          } else {
            endSlot[n] = warpChunkStates(a, bx, carryIn[n], lane, h);
          }
#pragma unroll
          for (int i = 0; i < I; ++i) y[i] += Cv[i] * h[i];
        }
      }
      __syncwarp();  // carryOut and intervalEnds complete; reads of carryIn done before it is rewritten

      writeCheckpoints<kChunk, kIntervalsPerChunk, kIntervalSteps>(p, args.checkpoints, lane, N, L, row, t0, carryOut,
                                                                   intervalEnds);

      writeChunkOutput<DT, I>(p, d, rowStart + laneT0, count, vectorized, y);
    };

    // Packed sequences (uniform over the warp, outside every state loop). A sequence starting at
    // a chunk's first step t0 only replaces the carry (after writing the carry, the state at
    // t0 - 1, as the lastState of the sequence ending there): that chunk keeps its path. A chunk
    // with a start strictly inside runs on the packed path (in chunks of at most 8 steps per
    // lane). One binary search per chunk over cuSeqlens. Only the kPackedSequences kernel has this
    // code: in the others cu is a null constant and every use of it folds away.
    const int32_t *const cu = kPackedSequences ? p.cuSeqlens : nullptr;
    auto startSequenceAt = [&](int64_t t0, int parity) {
      const int64_t s = firstOffsetAbove(cu, p.sequences, t0) - 1;
      if (cu[s] != t0) return;
      float *const carry = carries + parity * N;
      const int64_t ended = t0 > 0 ? firstOffsetAbove(cu, p.sequences, t0 - 1) - 1 : -1;
      for (int n = lane; n < N; n += kWarpSize) {
        if (ended >= 0 && p.lastState) p.lastState[(ended * dim + d) * N + n] = carry[n];
        carry[n] = p.initialState ? p.initialState[(s * dim + d) * N + n] : 0.0f;
      }
      __syncwarp();
    };
    auto startsInside = [&](int64_t t0, int64_t len) {
      return cu[firstOffsetAbove(cu, p.sequences, t0)] < std::min<int64_t>(t0 + len, L);
    };

    // The full chunks on the full-chunk path, then the rest in chunks of at most 8 steps per lane.
    constexpr int kAnyItems = anyChunkItems(ITEMS);
    constexpr int64_t kAnyChunk = int64_t(kWarpSize) * kAnyItems;
    // One chunk of the any-chunk shape from t0 (the carry in carries[parity], flipped per chunk
    // run). Where a sequence starts inside, it runs as chunks of 2 steps per lane, each on the
    // packed path where a start lies inside it: more steps per lane there would spill.
    constexpr int kPackedItems = 2;
    constexpr int64_t kPackedChunk = int64_t(kWarpSize) * kPackedItems;
    auto anyChunk = [&](int64_t t0, int &parity) {
      if (!kPackedSequences || !startsInside(t0, kAnyChunk)) {
        chunk(t0, parity, PathTag<Path::Any>{}, ItemsTag<kAnyItems>{});
        parity ^= 1;
        return;
      }
      if constexpr (kPackedSequences) {
        for (int64_t t = t0; t < std::min<int64_t>(t0 + kAnyChunk, L); t += kPackedChunk, parity ^= 1) {
          if (t != t0) startSequenceAt(t, parity);
          if (startsInside(t, kPackedChunk))
            chunk(t, parity, PathTag<Path::Packed>{}, ItemsTag<kPackedItems>{});
          else
            chunk(t, parity, PathTag<Path::Any>{}, ItemsTag<kPackedItems>{});
        }
      }
    };
    int parity = 0;
    int64_t t0 = 0;
    for (; t0 < args.fastSteps; t0 += kWarpSize * ITEMS) {
      if (cu) startSequenceAt(t0, parity);
      if (!cu || !startsInside(t0, kWarpSize * ITEMS)) {
        chunk(t0, parity, PathTag<Path::Full>{}, ItemsTag<ITEMS>{});
        parity ^= 1;
      } else {
        for (int64_t t = t0; t < t0 + kWarpSize * ITEMS; t += kAnyChunk) {
          if (t != t0) startSequenceAt(t, parity);
          anyChunk(t, parity);
        }
      }
    }
    for (; t0 < L; t0 += kAnyChunk) {
      if (cu) startSequenceAt(t0, parity);
      anyChunk(t0, parity);
    }

    if (p.lastState) writeLastStates(p, lane, N, dim, L, row, d, cu, carries + parity * N);
  }
}

template <DType DT, int ITEMS, bool kPackedSequences = false>
cudaError_t launchForward(const ScanForwardParams &p, cudaStream_t stream) {
  using IO = ItemIO<DT, ITEMS>;
  const int64_t L = p.shape.seqlen;
  constexpr int64_t kChunk = int64_t(kWarpSize) * ITEMS;
  ForwardArgs args;
  args.p = p;
  args.rows = p.shape.batch * p.shape.dim;
  args.checkpoints = ceilDiv(L, p.chunkLength);
  args.sharedFloatsPerWarp = forwardSharedFloatsPerWarp(p, ITEMS);
  args.vectorized = IO::alignedRows(p.u, L) && IO::alignedRows(p.delta, L) && IO::alignedRows(p.out, L) &&
                    (!p.z || IO::alignedRows(p.z, L)) && (!p.B.varying() || IO::alignedRows(p.B.data, L)) &&
                    (!p.C.varying() || IO::alignedRows(p.C.data, L));
  // The full-chunk path: aligned rows, input-dependent B and C, the chunks that lie inside L.
  const bool fullChunkPath = args.vectorized && p.B.varying() && p.C.varying();
  if constexpr (ITEMS > kPackedForwardItems) {
    // The 16-step kernel is for the full-chunk path; other rows run in the 8-step one.
    if (!fullChunkPath) return launchForward<DT, 8>(p, stream);
  }
  args.fastSteps = fullChunkPath ? L / kChunk * kChunk : 0;

  const size_t sharedBytes = size_t(kForwardWarps) * size_t(args.sharedFloatsPerWarp) * sizeof(float);
  const void *kernel = reinterpret_cast<const void *>(&scanForwardKernel<DT, ITEMS, kPackedSequences>);
  SS_CUDA_TRY(allowSharedMemory(kernel, sharedBytes));
  scanForwardKernel<DT, ITEMS, kPackedSequences>
      <<<gridBlocks(ceilDiv(args.rows, kForwardWarps)), kForwardThreads, sharedBytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

int64_t scanChunkLength(const ScanShape &shape) {
  // The checkpoint interval: the forward's chunk, capped at kMaxCheckpointInterval steps.
  // Above 256 steps every dtype's chunk holds whole 128-step intervals: the dtype does not matter.
  return std::min<int64_t>(int64_t(kWarpSize) * forwardItems(shape.seqlen, DType::Float32), kMaxCheckpointInterval);
}

gpu::Status scanForward(const ScanForwardParams &p, gpu::Stream stream) {
  const ScanShape &s = p.shape;
  SS_CUDA_TRY(checkScanShape(p));
  if (isEmptyScan(s)) return cudaSuccess;
  // The checkpoint layout is fixed by the shape; the caller passes it back in chunkLength.
  if (p.chunkLength != scanChunkLength(s)) return cudaErrorInvalidValue;
  const int items = forwardItems(s.seqlen, p.dtype);
  return dispatchDType(p.dtype, [&](auto dtype) {
    constexpr DType kDType = decltype(dtype)::value;
    if (p.cuSeqlens) return launchForward<kDType, kPackedForwardItems, true>(p, stream);
    return dispatchItems<maxForwardItems(kDType)>(
        items, [&](auto itemsTag) { return launchForward<kDType, decltype(itemsTag)::value>(p, stream); });
  });
}

}  // namespace ss::cuda
