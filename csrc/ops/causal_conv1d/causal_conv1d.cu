// The causal depthwise convolution over whole sequences (causalConv1d, causalConv1dBackward) on the
// GPU.
//
// Tiles. x is (batch, dim, L), contiguous along L, so a tile is a run of one row (b, d): a segment of
// `lanes` threads (a power of two, at most the block) owns `lanes * kItems` consecutive steps, each
// lane kItems of them (16 bytes: one vector load or store). A block of kConvThreads threads holds
// kConvThreads / lanes rows of the same tile index: short rows share a block, long ones are split
// into tiles. Each row's steps go through shared memory as float32 so that every lane can read its
// window, W - 1 steps back (the forward) or ahead (dx); the W - 1 steps beyond either end of the
// tile (the halo) are loaded by one lane. A grid-stride loop over (row group, tile): no grid limit.
//
// Sequences. Without cuSeqlens the window of step t reaches back into initialState (or zeros) for
// t < W - 1. With cuSeqlens (batch 1) a lane finds the sequence of its first step by a binary
// search over the boundaries (once per tile and lane, a few cached reads), then walks forward with
// its steps: no search per step. Window entries before the sequence's start come from its
// initialState row (or are zero), gradients never flow past its end: nothing crosses a boundary.
//
// The states (finalState, dInitialState) are per (sequence, channel): a small kernel of their own,
// one thread per pair, which handles empty sequences, L = 0 and L < W - 1 without special cases in
// the tiles (it reads x and dout at W - 1 steps per pair: a negligible share of the traffic).
//
// Backward. dp_t = dout_t silu'(p_t) (p recomputed from x: no checkpoint), dx_u = sum_m w[W-1-m]
// dp_{u+m} over the steps u + m of u's sequence, plus dFinalState where u is one of the last W - 1
// inputs. dweight and dbias: each tile sums its dp_t xs[t+k] and dp_t over its lanes in a fixed order
// into one partial per (tile, row) (W + 1 floats), and a second kernel adds the partials of each
// channel over batch and tiles in a fixed order. So the result never depends on the order blocks
// run in: the default is already deterministic, `deterministic: true` takes the same path, and no
// float atomics are needed. The partials are (tiles * batch * dim * (W + 1)) floats, (W + 1) * 4 /
// (kItems * lanes * s) of x's bytes: under 1 % at L >= 1024.
//
// Traffic (bytes per element of x, s = its size): forward x read and out written, 2 s; backward x
// and dout read, dx written, 3 s; plus the halos (2 (W - 1) steps per tile) and the partials. The
// kernels are memory-bound: a handful of FMAs per byte.
//
// Instances (causal_conv1d_cuda.cuh): each of the four kernels templated on W is compiled for W = 2,
// 3, 4 and once with the width read at run time (W = kRuntimeWidth: widths 1 and 5..8), per dtype:
// 48 instances, where one per width 1..8 made 96. In the kernels, kMaxW (kMaxH) sizes the
// width-indexed register arrays and bounds the unrolled loops over them, `width` (H) is the call's
// width (W - 1); both are W (W - 1) in a compile-time instance. Loops that touch only memory run
// to `width` or H directly.
#include <algorithm>

#include "../../common/scan_math.h"
#include "causal_conv1d_cuda.cuh"

namespace ss::cuda {
namespace {

constexpr int kConvThreads = 128;
// Blocks per SM the backward is compiled for: uncapped it took up to 112 registers (16 warps per
// SM, too few 16-byte loads in flight for a memory-bound kernel). W <= 4 (Mamba's) fits 64
// registers without spills (32 warps); wider windows got 80 (24 warps), where 64 spilled up to
// 200 bytes. The runtime-width instance (widths 1, 5..8) gets 128 (16 warps): its guarded window
// code spilled 68 to 368 bytes at 80 registers and 16 to 116 at 96 (ptxas -v, sm_90).
constexpr int backwardMinBlocks(int W) { return W == kRuntimeWidth ? 4 : 8; }
constexpr int kReduceThreads = 256;
constexpr int kStateThreads = 128;

// Steps per lane: one 16-byte vector of x's dtype.
template <DType DT>
constexpr int kConvItems = 16 / int(sizeof(typename Element<DT>::Storage));

// The sequence a step belongs to: its steps [start, end) of the row, and its row of the states.
struct SeqCursor {
  int64_t start, end, seq;
};

// The sequence of step t (< L) of batch row b. With cuSeqlens: the last i < nseq with
// cuSeqlens[i] <= t, whose end is then > t (empty sequences are skipped).
__device__ __forceinline__ SeqCursor sequenceOf(const ConvForwardParams &p, int64_t b, int64_t t) {
  if (!p.cuSeqlens) return {0, p.seqlen, b};
  int64_t lo = 0, hi = p.sequences - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (p.cuSeqlens[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return {p.cuSeqlens[lo], p.cuSeqlens[lo + 1], lo};
}

// Moves the cursor forward to the sequence of step t (>= the cursor's start, < L).
__device__ __forceinline__ void advanceTo(const ConvForwardParams &p, SeqCursor &c, int64_t t) {
  while (t >= c.end) {
    ++c.seq;
    c.start = p.cuSeqlens[c.seq];
    c.end = p.cuSeqlens[c.seq + 1];
  }
}

// Column c of row `seq` of initialState (H = W - 1 columns) for channel d, zero without one.
template <DType DT>
__device__ __forceinline__ float initialColumn(const ConvForwardParams &p, int64_t seq, int64_t d, int64_t c, int H) {
  return p.initialState ? loadElement<DT>(p.initialState, (seq * p.dim + d) * H + c) : 0.0f;
}

// xs at step u (u >= cursor start - H) of the sequence under the cursor: x (from `tile`, which holds
// x at steps tileFirst, tileFirst + 1, ...) from its start on, initialState before.
template <DType DT>
__device__ __forceinline__ float windowAt(const ConvForwardParams &p, const SeqCursor &c, int64_t d, int64_t u,
                                          const float *tile, int64_t tileFirst, int H) {
  return u >= c.start ? tile[u - tileFirst] : initialColumn<DT>(p, c.seq, d, H - (c.start - u), H);
}

// xs at step u read from global memory (the state kernels).
template <DType DT>
__device__ __forceinline__ float windowAtGlobal(const ConvForwardParams &p, const SeqCursor &c, int64_t row, int64_t d,
                                                int64_t u, int H) {
  return u >= c.start ? loadElement<DT>(p.x, row * p.seqlen + u) : initialColumn<DT>(p, c.seq, d, H - (c.start - u), H);
}

// How a launch splits rows into tiles (the same for the forward and the backward).
struct TileShape {
  int lanesLog2 = 0;        // lanes per row
  int64_t chunk = 0;        // steps per tile
  int64_t tiles = 0;        // tiles per row
  int64_t rowGroups = 0;    // blocks of kConvThreads / lanes rows
  bool vectorized = false;  // rows keep 16-byte alignment (the kernel adds "the lane's steps are full")
};

template <DType DT>
TileShape tileShape(int64_t rows, int64_t L, const void *const *tensors, int count) {
  TileShape s;
  const int64_t lanesNeeded = ceilDiv(L, kConvItems<DT>);
  while ((1 << s.lanesLog2) < kConvThreads && (int64_t(1) << s.lanesLog2) < lanesNeeded) ++s.lanesLog2;
  s.chunk = int64_t(kConvItems<DT>) << s.lanesLog2;
  s.tiles = ceilDiv(L, s.chunk);
  s.rowGroups = ceilDiv(rows, kConvThreads >> s.lanesLog2);
  s.vectorized = true;
  for (int i = 0; i < count; ++i) s.vectorized &= ItemIO<DT, kConvItems<DT>>::alignedRows(tensors[i], L);
  return s;
}

// ---- Forward ------------------------------------------------------------------------------------------

template <DType DT, int W>
__global__ void __launch_bounds__(kConvThreads) convForwardKernel(const ConvForwardParams p, const TileShape s) {
  constexpr int kItems = kConvItems<DT>, kMaxW = kWidthBound<W>, kMaxH = kMaxW - 1;
  const int width = convWidth<W>(p.width), H = width - 1;
  using IO = ItemIO<DT, kItems>;
  extern __shared__ float shared[];
  const int lanes = 1 << s.lanesLog2, lane = int(threadIdx.x) & (lanes - 1);
  const int rowInBlock = int(threadIdx.x) >> s.lanesLog2;
  const int64_t D = p.dim, L = p.seqlen, rows = p.batch * D;
  float *const xs = shared + rowInBlock * (H + s.chunk);  // x at steps chunkStart - H, ...

  for (int64_t work = blockIdx.x; work < s.rowGroups * s.tiles; work += gridDim.x) {
    const int64_t row = (work / s.tiles) * (kConvThreads >> s.lanesLog2) + rowInBlock;
    const int64_t chunkStart = (work % s.tiles) * s.chunk, t0 = chunkStart + int64_t(lane) * kItems;
    const int count = row < rows ? int(std::min<int64_t>(std::max<int64_t>(L - t0, 0), kItems)) : 0;
    float v[kItems];
    IO::load(p.x, row * L + t0, count, s.vectorized && count == kItems, v);
#pragma unroll
    for (int i = 0; i < kItems; ++i) xs[H + lane * kItems + i] = v[i];
    if (row < rows && lane == 0) {
#pragma unroll
      for (int j = 0; j < H; ++j) {
        const int64_t u = chunkStart - H + j;
        xs[j] = u >= 0 ? loadElement<DT>(p.x, row * L + u) : 0.0f;
      }
    }
    __syncthreads();
    if (count > 0) {
      const int64_t b = row / D, d = row - b * D;
      float w[kMaxW];
#pragma unroll
      for (int k = 0; k < kMaxW; ++k)
        if (k < width) w[k] = p.weight[d * width + k];
      const float bias = p.bias ? p.bias[d] : 0.0f;
      SeqCursor c = sequenceOf(p, b, t0);
      float out[kItems];
      if (t0 - H >= c.start && t0 + kItems <= c.end) {
        // The common case: every window of the lane lies inside one sequence. Its kItems + H inputs
        // are read from shared memory once, with no test per element (the same sums, same order).
        float window[kItems + kMaxH];
#pragma unroll
        for (int j = 0; j < kItems + kMaxH; ++j)
          if (j < kItems + H) window[j] = xs[lane * kItems + j];
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          float acc = bias;
#pragma unroll
          for (int k = 0; k < kMaxW; ++k)
            if (k < width) acc += w[k] * window[i + k];
          out[i] = p.silu ? silu(acc) : acc;
        }
      } else {
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          out[i] = 0.0f;
          if (i < count) {
            const int64_t t = t0 + i;
            if (p.cuSeqlens) advanceTo(p, c, t);
            float acc = bias;
#pragma unroll
            for (int k = 0; k < kMaxW; ++k)
              if (k < width) acc += w[k] * windowAt<DT>(p, c, d, t - H + k, xs, chunkStart - H, H);
            out[i] = p.silu ? silu(acc) : acc;
          }
        }
      }
      IO::store(p.out, row * L + t0, count, s.vectorized && count == kItems, out);
    }
    __syncthreads();  // the next tile overwrites xs
  }
}

// finalState: one thread per (sequence, channel), xs at the sequence's last W - 1 steps.
template <DType DT, int W>
__global__ void __launch_bounds__(kStateThreads) convFinalStateKernel(const ConvForwardParams p) {
  const int H = convWidth<W>(p.width) - 1;
  const int64_t D = p.dim, pairs = p.sequences * D;
  for (int64_t i = int64_t(blockIdx.x) * kStateThreads + threadIdx.x; i < pairs;
       i += int64_t(gridDim.x) * kStateThreads) {
    const int64_t seq = i / D, d = i - seq * D;
    const SeqCursor c =
        p.cuSeqlens ? SeqCursor{p.cuSeqlens[seq], p.cuSeqlens[seq + 1], seq} : SeqCursor{0, p.seqlen, seq};
    const int64_t row = p.cuSeqlens ? d : i;  // the row of x: (0, d) packed, else (seq, d)
#pragma unroll
    for (int j = 0; j < H; ++j)
      storeElement<DT>(p.finalState, i * H + j, windowAtGlobal<DT>(p, c, row, d, c.end - H + j, H));
  }
}

// ---- Backward -----------------------------------------------------------------------------------------

// Shared memory per row of a backward block: x at chunkStart - H .. chunkEnd + H, dp at chunkStart ..
// chunkEnd + H; then the block's lane sums.
__host__ __device__ inline int64_t backwardRowFloats(int64_t chunk, int H) { return (chunk + 2 * H) + (chunk + H); }

template <DType DT, int W>
__global__ void __launch_bounds__(kConvThreads, backwardMinBlocks(W))
    convBackwardKernel(const ConvBackwardParams q, const TileShape s, float *partials) {
  constexpr int kItems = kConvItems<DT>, kMaxW = kWidthBound<W>, kMaxH = kMaxW - 1;
  using IO = ItemIO<DT, kItems>;
  const ConvForwardParams &p = q.fwd;
  const int width = convWidth<W>(p.width), H = width - 1;
  extern __shared__ float shared[];
  const int lanes = 1 << s.lanesLog2, lane = int(threadIdx.x) & (lanes - 1);
  const int rowInBlock = int(threadIdx.x) >> s.lanesLog2, rowsPerBlock = kConvThreads >> s.lanesLog2;
  const int64_t D = p.dim, L = p.seqlen, rows = p.batch * D;
  float *const xs = shared + rowInBlock * backwardRowFloats(s.chunk, H);      // x at chunkStart - H, ...
  float *const dps = xs + s.chunk + 2 * H;                                    // dp at chunkStart, ...
  float *const sums = shared + rowsPerBlock * backwardRowFloats(s.chunk, H);  // (kConvThreads, W + 1)

  for (int64_t work = blockIdx.x; work < s.rowGroups * s.tiles; work += gridDim.x) {
    const int64_t tile = work % s.tiles;
    const int64_t row = (work / s.tiles) * rowsPerBlock + rowInBlock;
    const int64_t chunkStart = tile * s.chunk, chunkEnd = chunkStart + s.chunk;
    const int64_t t0 = chunkStart + int64_t(lane) * kItems;
    const int count = row < rows ? int(std::min<int64_t>(std::max<int64_t>(L - t0, 0), kItems)) : 0;
    const bool vectorized = s.vectorized && count == kItems;
    const int64_t b = row / D, d = row - b * D;
    float v[kItems], go[kItems];
    IO::load(p.x, row * L + t0, count, vectorized, v);
    IO::load(q.dout, row * L + t0, count, vectorized, go);
#pragma unroll
    for (int i = 0; i < kItems; ++i) xs[H + lane * kItems + i] = v[i];
    if (row < rows && lane == 0) {
#pragma unroll
      for (int j = 0; j < H; ++j) {
        const int64_t before = chunkStart - H + j, after = chunkEnd + j;
        xs[j] = before >= 0 ? loadElement<DT>(p.x, row * L + before) : 0.0f;
        xs[H + s.chunk + j] = after < L ? loadElement<DT>(p.x, row * L + after) : 0.0f;
      }
    }
    __syncthreads();

    // dw sums dp xs[t + k] (dweight), db sums dp (dbias): db apart from dw, whose index would
    // otherwise be the runtime width.
    float w[kMaxW], dw[kMaxW] = {}, db = 0.0f;
    float bias = 0.0f;
    if (row < rows) {
#pragma unroll
      for (int k = 0; k < kMaxW; ++k)
        if (k < width) w[k] = p.weight[d * width + k];
      bias = p.bias ? p.bias[d] : 0.0f;
    }
    // dp at step t, from its window; `sum` adds its terms to dw and db (the tile's own steps only).
    auto dpAt = [&](const SeqCursor &c, int64_t t, float dout, bool sum) {
      float window[kMaxW];
      float acc = bias;
#pragma unroll
      for (int k = 0; k < kMaxW; ++k) {
        if (k < width) {
          window[k] = windowAt<DT>(p, c, d, t - H + k, xs, chunkStart - H, H);
          acc += w[k] * window[k];
        }
      }
      const float dp = p.silu ? dout * siluGrad(acc) : dout;
      if (sum) {
#pragma unroll
        for (int k = 0; k < kMaxW; ++k)
          if (k < width) dw[k] += dp * window[k];
        db += dp;
      }
      return dp;
    };
    SeqCursor c{0, 0, 0};
    if (count > 0) c = sequenceOf(p, b, t0);
    if (count > 0 && t0 - H >= c.start && t0 + kItems <= c.end) {
      // The common case (as in the forward): the lane's windows inside one sequence, read once.
      float window[kItems + kMaxH];
#pragma unroll
      for (int j = 0; j < kItems + kMaxH; ++j)
        if (j < kItems + H) window[j] = xs[lane * kItems + j];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        float acc = bias;
#pragma unroll
        for (int k = 0; k < kMaxW; ++k)
          if (k < width) acc += w[k] * window[i + k];
        const float dp = p.silu ? go[i] * siluGrad(acc) : go[i];
#pragma unroll
        for (int k = 0; k < kMaxW; ++k)
          if (k < width) dw[k] += dp * window[i + k];
        db += dp;
        dps[lane * kItems + i] = dp;
      }
    } else {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        float dp = 0.0f;
        if (i < count) {
          if (p.cuSeqlens) advanceTo(p, c, t0 + i);
          dp = dpAt(c, t0 + i, go[i], true);
        }
        dps[lane * kItems + i] = dp;
      }
    }
    // The H steps after the tile (the next tile's): their dp reaches back into this tile's dx.
    if (row < rows && lane == lanes - 1) {
      SeqCursor after = sequenceOf(p, b, std::min(chunkEnd, L - 1));
#pragma unroll
      for (int j = 0; j < H; ++j) {
        const int64_t t = chunkEnd + j;
        float dp = 0.0f;
        if (t < L) {
          if (p.cuSeqlens) advanceTo(p, after, t);
          dp = dpAt(after, t, loadElement<DT>(q.dout, row * L + t), false);
        }
        dps[s.chunk + j] = dp;
      }
    }
    __syncthreads();

    if (count > 0) {
      SeqCursor cu = sequenceOf(p, b, t0);
      float dx[kItems];
      if (t0 + kItems + H <= cu.end) {
        // The common case: every step the lane's inputs feed lies in their sequence, none of them
        // is one of its last H inputs (no dFinalState term); dp read once. dpw is right-aligned:
        // dp at step t0 + j is dpw[unused + j], so the step u + (H - k) that input u = t0 + i feeds
        // through weight k is dpw[i + kMaxH - k], an index without the runtime width (the runtime
        // instance leaves its first kMaxH - H entries unused; elsewhere there are none).
        const int unused = kMaxH - H;
        float dpw[kItems + kMaxH];
#pragma unroll
        for (int j = 0; j < kItems + kMaxH; ++j)
          if (j >= unused) dpw[j] = dps[lane * kItems + j - unused];
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          float acc = 0.0f;
#pragma unroll
          for (int k = 0; k < kMaxW; ++k)
            if (k < width) acc += w[k] * dpw[i + kMaxH - k];
          dx[i] = acc;
        }
      } else {
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          dx[i] = 0.0f;
          if (i < count) {
            const int64_t u = t0 + i;
            if (p.cuSeqlens) advanceTo(p, cu, u);
            float acc = 0.0f;
#pragma unroll
            for (int k = 0; k < kMaxW; ++k) {  // step u + (H - k) with weight k, within u's sequence
              const int64_t t = u + (H - k);
              if (k < width && t < cu.end) acc += w[k] * dps[t - chunkStart];
            }
            if (q.dFinalState && u >= cu.end - H)
              acc += loadElement<DT>(q.dFinalState, (cu.seq * D + d) * H + (u - (cu.end - H)));
            dx[i] = acc;
          }
        }
      }
      IO::store(q.dx, row * L + t0, count, vectorized, dx);
    }

    // The tile's dweight / dbias partial of this row: its lanes' sums, in lane order.
    float *const laneSums = sums + int(threadIdx.x) * (width + 1);
#pragma unroll
    for (int k = 0; k < kMaxW; ++k)
      if (k < width) laneSums[k] = dw[k];
    laneSums[width] = db;
    __syncthreads();
    if (row < rows) {
      for (int k = lane; k <= width; k += lanes) {
        float total = 0.0f;
        for (int l = 0; l < lanes; ++l) total += sums[(rowInBlock * lanes + l) * (width + 1) + k];
        partials[(tile * rows + row) * (width + 1) + k] = total;
      }
    }
    __syncthreads();  // the next tile overwrites xs, dps and sums
  }
}

// dweight[d, k] (k < W) and dbias[d] (k = W): the partials of channel d over (tile, batch), in order.
__global__ void __launch_bounds__(kReduceThreads)
    convReducePartialsKernel(const float *partials, int64_t sources, int64_t dim, int width, float *dweight,
                             float *dbias) {
  const int64_t entries = dim * (width + 1);
  for (int64_t i = int64_t(blockIdx.x) * kReduceThreads + threadIdx.x; i < entries;
       i += int64_t(gridDim.x) * kReduceThreads) {
    float total = 0.0f;
    for (int64_t r = 0; r < sources; ++r) total += partials[r * entries + i];
    const int64_t d = i / (width + 1), k = i - d * (width + 1);
    if (k < width)
      dweight[d * width + k] = total;
    else if (dbias)
      dbias[d] = total;
  }
}

// dInitialState: one thread per (sequence, channel). Column c is xs at step u = start - H + c, which
// the first H steps of the sequence read (their dp recomputed here), and, when the sequence is
// shorter than H, finalState too. The loops over steps and columns index dp, so they unroll over
// kMaxH and stop at H.
template <DType DT, int W>
__global__ void __launch_bounds__(kStateThreads) convInitialStateGradKernel(const ConvBackwardParams q) {
  constexpr int kMaxW = kWidthBound<W>, kMaxH = kMaxW - 1;
  const ConvForwardParams &p = q.fwd;
  const int width = convWidth<W>(p.width), H = width - 1;
  const int64_t D = p.dim, pairs = p.sequences * D;
  for (int64_t i = int64_t(blockIdx.x) * kStateThreads + threadIdx.x; i < pairs;
       i += int64_t(gridDim.x) * kStateThreads) {
    const int64_t seq = i / D, d = i - seq * D;
    const SeqCursor c =
        p.cuSeqlens ? SeqCursor{p.cuSeqlens[seq], p.cuSeqlens[seq + 1], seq} : SeqCursor{0, p.seqlen, seq};
    const int64_t row = p.cuSeqlens ? d : i;
    float w[kMaxW];
#pragma unroll
    for (int k = 0; k < kMaxW; ++k)
      if (k < width) w[k] = p.weight[d * width + k];
    float dp[kMaxH > 0 ? kMaxH : 1];  // dp at steps start .. start + H - 1 (0 past the end)
#pragma unroll
    for (int m = 0; m < kMaxH; ++m) {
      if (m == H) break;
      const int64_t t = c.start + m;
      dp[m] = 0.0f;
      if (t < c.end) {
        float acc = p.bias ? p.bias[d] : 0.0f;
#pragma unroll
        for (int k = 0; k < kMaxW; ++k)
          if (k < width) acc += w[k] * windowAtGlobal<DT>(p, c, row, d, t - H + k, H);
        const float dout = loadElement<DT>(q.dout, row * p.seqlen + t);
        dp[m] = p.silu ? dout * siluGrad(acc) : dout;
      }
    }
#pragma unroll
    for (int col = 0; col < kMaxH; ++col) {
      if (col == H) break;
      const int64_t u = c.start - H + col;
      float acc = 0.0f;
#pragma unroll
      for (int k = 0; k < kMaxW; ++k) {  // step u + (H - k) = start + col - k
        const int m = col - k;
        if (k < width && m >= 0) acc += w[k] * dp[m];
      }
      if (q.dFinalState && u >= c.end - H) acc += loadElement<DT>(q.dFinalState, i * H + (u - (c.end - H)));
      storeElement<DT>(q.dInitialState, i * H + col, acc);
    }
  }
}

// The launches: W picks the kernels' instance (dispatchWidth), the sizes come from the call's width.
template <DType DT, int W>
cudaError_t queueForward(const ConvForwardParams &p, gpu::Stream stream) {
  const int64_t rows = p.batch * p.dim;
  const int width = int(p.width);
  if (rows > 0 && p.seqlen > 0) {
    const void *tensors[] = {p.x, p.out};
    const TileShape s = tileShape<DT>(rows, p.seqlen, tensors, 2);
    const size_t shared = size_t(kConvThreads >> s.lanesLog2) * size_t(width - 1 + s.chunk) * sizeof(float);
    convForwardKernel<DT, W><<<gridBlocks(s.rowGroups * s.tiles), kConvThreads, shared, stream>>>(p, s);
    SS_CUDA_TRY(cudaGetLastError());
  }
  if (p.finalState && width > 1 && p.sequences * p.dim > 0) {
    convFinalStateKernel<DT, W>
        <<<gridBlocks(ceilDiv(p.sequences * p.dim, kStateThreads)), kStateThreads, 0, stream>>>(p);
    SS_CUDA_TRY(cudaGetLastError());
  }
  return cudaSuccess;
}

template <DType DT, int W>
cudaError_t queueBackward(const ConvBackwardParams &q, gpu::Stream stream) {
  const ConvForwardParams &p = q.fwd;
  const int64_t rows = p.batch * p.dim, L = p.seqlen;
  const int width = int(p.width);
  const void *tensors[] = {p.x, q.dout, q.dx};
  const TileShape s = tileShape<DT>(rows, L, tensors, 3);
  // Partials of (tile, batch) for each (channel, k); with L = 0 none, and the sums are zeros.
  const int64_t sources = rows > 0 ? s.tiles * p.batch : 0;
  float *partials = nullptr;
  const size_t partialBytes = size_t(sources * p.dim * (width + 1)) * sizeof(float);
  if (partialBytes > 0) SS_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void **>(&partials), partialBytes, stream));
  cudaError_t queued = cudaSuccess;
  if (sources > 0) {
    const size_t shared = (size_t(kConvThreads >> s.lanesLog2) * size_t(backwardRowFloats(s.chunk, width - 1)) +
                           size_t(kConvThreads) * size_t(width + 1)) *
                          sizeof(float);
    convBackwardKernel<DT, W><<<gridBlocks(s.rowGroups * s.tiles), kConvThreads, shared, stream>>>(q, s, partials);
    queued = cudaGetLastError();
  }
  if (queued == cudaSuccess && p.dim > 0) {
    const int64_t entries = p.dim * (width + 1);
    convReducePartialsKernel<<<gridBlocks(ceilDiv(entries, kReduceThreads)), kReduceThreads, 0, stream>>>(
        partials, sources, p.dim, width, q.dweight, q.dbias);
    queued = cudaGetLastError();
  }
  if (queued == cudaSuccess && q.dInitialState && width > 1 && p.sequences * p.dim > 0) {
    convInitialStateGradKernel<DT, W>
        <<<gridBlocks(ceilDiv(p.sequences * p.dim, kStateThreads)), kStateThreads, 0, stream>>>(q);
    queued = cudaGetLastError();
  }
  const cudaError_t freed = partials ? cudaFreeAsync(partials, stream) : cudaSuccess;
  return queued != cudaSuccess ? queued : freed;
}

bool validShape(const ConvForwardParams &p) {
  return p.batch >= 0 && p.dim >= 0 && p.seqlen >= 0 && p.sequences >= 0 && (!p.cuSeqlens || p.batch == 1);
}

}  // namespace

gpu::Status convForward(const ConvForwardParams &p, gpu::Stream stream) {
  if (!validShape(p)) return cudaErrorInvalidValue;
  return dispatchDType(p.dtype, [&](auto dtype) {
    return dispatchWidth(
        p.width, [&](auto width) { return queueForward<decltype(dtype)::value, decltype(width)::value>(p, stream); });
  });
}

gpu::Status convBackward(const ConvBackwardParams &q, gpu::Stream stream) {
  if (!validShape(q.fwd)) return cudaErrorInvalidValue;
  return dispatchDType(q.fwd.dtype, [&](auto dtype) {
    return dispatchWidth(q.fwd.width, [&](auto width) {
      return queueBackward<decltype(dtype)::value, decltype(width)::value>(q, stream);
    });
  });
}

}  // namespace ss::cuda
