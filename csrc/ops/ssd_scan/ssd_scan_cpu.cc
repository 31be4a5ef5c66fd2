// The state space dual scan (Mamba-2) on the CPU: forward and backward in the recurrent form,
// compiled once per instruction set (cpu/isa.h).
//
// Work: a forward task is one (batch row, head, tile of positions); a backward task is one (batch
// row, head). The split depends on the shape alone, never on the thread count. A task's state is a
// P x N matrix (P the positions of its tile), kept N-major as [n][block of kLanes positions p]
// vectors (P padded to whole vectors with zeros, which stay zero), so that every step is, per
// vector of states,
//   h = a h + (dt x_p) B_n     and     y_p += C_n h
// with B_n and C_n broadcast: no horizontal sum in the forward, and one exp2 per (t, task) for
// a = exp(dt A), computed a vector of steps at a time. A forward tile is at most kTileBlocks
// vectors, so that its state (N x 32 floats, 16 KiB at N = 128) stays in L1 and its y accumulators
// in registers. Time is walked in chunks of chunkLength steps; per chunk the task copies its inputs
// into small float tiles first (x, z, dout as [t][vector], B and C as [t][N]).
//
// Nothing of size L x P x N is ever stored: the forward writes the state at the end of every chunk
// (the checkpoints), and the backward recomputes one chunk at a time from them. Packed sequences
// (cuSeqlens) split a row into segments: the state restarts at each segment's first step from that
// sequence's initial state, and the backward's adjoint restarts at each segment's last step from its
// dLastState. Sums over heads (dB, dC of a group) and over batch rows (dA, dD, ddtBias) are kept
// per task and finished in a fixed order, so results never depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../../common/scan_math.h"
#include "../../cpu/scratch.h"
#include "../../cpu/segments.h"
#include "../../cpu/simd.h"
#include "../../cpu/thread_pool.h"
#include "ssd_scan.h"

namespace ss::cpu::SS_CPU_ISA {
namespace {

using simd::kLanes;
using simd::splat;
using simd::Vec;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- Per-head layout -------------------------------------------------------------------------------

// Vectors of positions in a forward task: 32 positions with AVX-512 and AVX2, 16 without.
constexpr int64_t kTileBlocks = kLanes >= 16 ? 2 : 4;

// Sizes of one task: positions [p0, p0 + P) of a head of headDim, in `blocks` vectors; N states.
struct HeadShape {
  int64_t headDim, p0, P, N, blocks;
  HeadShape(const SsdShape &s, int64_t first, int64_t count)
      : headDim(s.headDim), p0(first), P(count), N(s.dstate), blocks(ceilDiv(count, kLanes)) {}
  explicit HeadShape(const SsdShape &s) : HeadShape(s, 0, s.headDim) {}
  int64_t stateVecs() const { return N * blocks; }
};

// Tiles of positions per head in the forward, and the shape of tile j.
int64_t tilesPerHead(const SsdShape &s) { return ceilDiv(ceilDiv(s.headDim, kLanes), kTileBlocks); }
HeadShape tileShape(const SsdShape &s, int64_t j) {
  const int64_t first = j * kTileBlocks * kLanes;
  return HeadShape(s, first, std::min(s.headDim, first + kTileBlocks * kLanes) - first);
}

// The task's rows of a (P, N) float32 matrix (a public state row, `src` at its row 0) into the
// [n][block] vectors of a task; zeros when src is null.
void loadState(const float *src, const HeadShape &s, Vec *dst) {
  std::fill(dst, dst + s.stateVecs(), Vec{});
  if (!src) return;
  src += s.p0 * s.N;
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t n = 0; n < s.N; ++n) dst[n * s.blocks + p / kLanes][p % kLanes] = src[p * s.N + n];
}

void storeState(const Vec *src, const HeadShape &s, float *dst) {
  dst += s.p0 * s.N;
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t n = 0; n < s.N; ++n) dst[p * s.N + n] = src[n * s.blocks + p / kLanes][p % kLanes];
}

// A checkpoint (N, headDim) of the head into / out of the task's [n][block] vectors.
void loadCheckpoint(const float *ckpt, const HeadShape &s, Vec *dst) {
  std::fill(dst, dst + s.stateVecs(), Vec{});
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t q = 0; q < s.P; ++q) dst[n * s.blocks + q / kLanes][q % kLanes] = ckpt[n * s.headDim + s.p0 + q];
}

void storeCheckpoint(const Vec *src, const HeadShape &s, float *ckpt) {
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t q = 0; q < s.P; ++q) ckpt[n * s.headDim + s.p0 + q] = src[n * s.blocks + q / kLanes][q % kLanes];
}

// `count` rows of P elements, `stride` elements apart, into [row][block] vectors (zero padded). The
// vectors of a row are contiguous floats, so each row is one plain loop the compiler vectorises.
template <DType DT>
void gatherPositions(const void *src, int64_t first, int64_t stride, int64_t count, const HeadShape &s, Vec *dst) {
  const int64_t padded = s.blocks * kLanes;
  for (int64_t t = 0; t < count; ++t) {
    float *row = reinterpret_cast<float *>(dst + t * s.blocks);
    const int64_t base = first + t * stride;
    for (int64_t p = 0; p < s.P; ++p) row[p] = loadElement<DT>(src, base + p);
    for (int64_t p = s.P; p < padded; ++p) row[p] = 0.0f;
  }
}

template <DType DT>
void scatterPositions(const Vec *src, int64_t count, const HeadShape &s, void *dst, int64_t first, int64_t stride) {
  for (int64_t t = 0; t < count; ++t) {
    const float *row = reinterpret_cast<const float *>(src + t * s.blocks);
    const int64_t base = first + t * stride;
    for (int64_t p = 0; p < s.P; ++p) storeElement<DT>(dst, base + p, row[p]);
  }
}

// `count` rows of N elements, `stride` apart: float32 rows are read where they are (the returned
// pointer and row stride); 16-bit rows are widened into dst as [row][N].
template <DType DT>
const float *gatherStates(const void *src, int64_t first, int64_t stride, int64_t count, int64_t N, float *dst,
                          int64_t &rowStride) {
  if constexpr (DT == DType::Float32) {
    rowStride = stride;
    return static_cast<const float *>(src) + first;
  }
  rowStride = N;
  for (int64_t t = 0; t < count; ++t)
    for (int64_t n = 0; n < N; ++n) dst[t * N + n] = loadElement<DT>(src, first + t * stride + n);
  return dst;
}

// Per-head constants: A (plain and scaled for exp2), D over the task's positions, dtBias.
struct HeadConstants {
  float A = 0, A2 = 0, bias = 0;
  const Vec *D = nullptr;  // [blocks], or null without D
};

// Strides of one call (in elements).
struct Strides {
  int64_t xRow, dtRow, bcRow;  // per step: H * P, H, G * N
  explicit Strides(const SsdShape &s) : xRow(s.heads * s.headDim), dtRow(s.heads), bcRow(s.groups * s.dstate) {}
};

// The tiles of one chunk of one task: inputs as floats, dt after bias, softplus and clamp.
struct ChunkTiles {
  Vec *x = nullptr, *z = nullptr, *y = nullptr;  // [chunk][blocks]
  float *dt = nullptr, *dtGrad = nullptr;        // [chunk]
  float *a = nullptr;                            // [chunk rounded up to vectors]: exp(dt A)
  float *bBuf = nullptr, *cBuf = nullptr;        // [chunk][N]: B and C widened from 16 bits
  const float *B = nullptr, *C = nullptr;        // step t's row at B + t * bcStride
  int64_t bcStride = 0;

  ChunkTiles(Carver &c, const SsdForwardParams &p, const HeadShape &s, bool backward) {
    const int64_t T = p.chunkLength;
    x = c.take<Vec>(T * s.blocks);
    if (p.z) z = c.take<Vec>(T * s.blocks);
    y = c.take<Vec>(T * s.blocks);
    dt = c.take<float>(T);
    a = c.take<float>(ceilDiv(T, kLanes) * kLanes);
    if (backward) dtGrad = c.take<float>(T);
    bBuf = c.take<float>(T * s.N);
    cBuf = c.take<float>(T * s.N);
  }

  template <DType DT>
  void load(const SsdForwardParams &p, const HeadShape &s, const HeadConstants &k, int64_t b, int64_t h, int64_t t0,
            int64_t len) {
    const Strides st(p.shape);
    const int64_t L = p.shape.seqlen, g = h / (p.shape.heads / p.shape.groups);
    const int64_t row0 = b * L + t0;
    const int64_t first = row0 * st.xRow + h * s.headDim + s.p0;
    gatherPositions<DT>(p.x, first, st.xRow, len, s, x);
    if (z) gatherPositions<DT>(p.z, first, st.xRow, len, s, z);
    B = gatherStates<DT>(p.B, row0 * st.bcRow + g * s.N, st.bcRow, len, s.N, bBuf, bcStride);
    C = gatherStates<DT>(p.C, row0 * st.bcRow + g * s.N, st.bcRow, len, s.N, cBuf, bcStride);
    for (int64_t t = 0; t < len; ++t) {
      const SsdDt d =
          ssdDt(loadElement<DT>(p.dt, row0 * st.dtRow + t * st.dtRow + h), k.bias, p.dtSoftplus, p.dtLow, p.dtHigh);
      dt[t] = d.dt;
      if (dtGrad) dtGrad[t] = d.grad;
    }
    // a = exp(dt A) = 2^(dt A log2 e), a vector of steps at a time (lanes are independent, so a
    // step's value does not depend on its neighbours).
    for (int64_t t = 0; t < len; t += kLanes) {
      Vec v = {};
      for (int64_t i = 0; i < kLanes && t + i < len; ++i) v[i] = dt[t + i] * k.A2;
      simd::storeu(a + t, simd::exp2(v));
    }
  }
};

HeadConstants headConstants(const SsdForwardParams &p, const HeadShape &s, int64_t h, Vec *D) {
  HeadConstants k;
  k.A = p.A[h];
  k.A2 = p.A[h] * kLog2e;
  k.bias = p.dtBias ? p.dtBias[h] : 0.0f;
  if (p.D) {
    for (int64_t i = 0; i < s.blocks; ++i) D[i] = Vec{};
    for (int64_t q = 0; q < s.P; ++q) D[q / kLanes][q % kLanes] = p.dPerHead ? p.D[h] : p.D[h * s.headDim + s.p0 + q];
    k.D = D;
  }
  return k;
}

// advance() for a task of NB vectors: the y accumulators and dt x stay in registers, and two sets
// of accumulators (even and odd n, added at the end) keep the additions' latency off the critical
// path.
template <int NB>
void advanceFixed(const ChunkTiles &tiles, int64_t N, int64_t from, int64_t to, Vec *h, Vec *states) {
  // With `states`, step t reads h_{t-1} where the step before left it and writes h_t straight into
  // its slot of states (no copy per step); h gets the last one at the end.
  const Vec *src = h;
  for (int64_t t = from; t < to; ++t) {
    Vec *dst = states ? states + t * N * NB : h;
    const Vec a = splat(tiles.a[t]);
    const float dt = tiles.dt[t];
    const float *Bt = tiles.B + t * tiles.bcStride, *Ct = tiles.C + t * tiles.bcStride;
    Vec dtx[NB], y0[NB], y1[NB];
    for (int i = 0; i < NB; ++i) {
      dtx[i] = dt * tiles.x[t * NB + i];
      y0[i] = Vec{};
      y1[i] = Vec{};
    }
    int64_t n = 0;
    for (; n + 2 <= N; n += 2) {
      const Vec b0 = splat(Bt[n]), c0 = splat(Ct[n]), b1 = splat(Bt[n + 1]), c1 = splat(Ct[n + 1]);
      const Vec *s0 = src + n * NB, *s1 = s0 + NB;
      Vec *h0 = dst + n * NB, *h1 = h0 + NB;
      for (int i = 0; i < NB; ++i) {
        h0[i] = stateStep(a, s0[i], dtx[i], b0);
        y0[i] += c0 * h0[i];
      }
      for (int i = 0; i < NB; ++i) {
        h1[i] = stateStep(a, s1[i], dtx[i], b1);
        y1[i] += c1 * h1[i];
      }
    }
    if (n < N) {
      const Vec b0 = splat(Bt[n]), c0 = splat(Ct[n]);
      const Vec *s0 = src + n * NB;
      Vec *h0 = dst + n * NB;
      for (int i = 0; i < NB; ++i) {
        h0[i] = stateStep(a, s0[i], dtx[i], b0);
        y0[i] += c0 * h0[i];
      }
    }
    for (int i = 0; i < NB; ++i) tiles.y[t * NB + i] = y0[i] + y1[i];
    src = dst;
  }
  if (states && to > from) std::copy(src, src + N * NB, h);
}

// Steps [from, to) of a chunk (tile indices) from the state in h (advanced in place); y[t] = C_t . h_t
// before D and the gate. With `states`, also keeps every h_t ([t][n][block]).
void advance(const ChunkTiles &tiles, const HeadShape &s, int64_t from, int64_t to, Vec *h, Vec *states) {
  const int64_t N = s.N, blocks = s.blocks;
  static_assert(kTileBlocks <= 4, "advanceFixed instances");
  switch (blocks) {
    case 1: return advanceFixed<1>(tiles, N, from, to, h, states);
    case 2: return advanceFixed<2>(tiles, N, from, to, h, states);
    case 3: return advanceFixed<3>(tiles, N, from, to, h, states);
    case 4: return advanceFixed<4>(tiles, N, from, to, h, states);
    default: break;
  }
  for (int64_t t = from; t < to; ++t) {
    const float dt = tiles.dt[t];
    const Vec a = splat(tiles.a[t]);
    const float *Bt = tiles.B + t * tiles.bcStride, *Ct = tiles.C + t * tiles.bcStride;
    for (int64_t i = 0; i < blocks; ++i) {
      const Vec dtx = dt * tiles.x[t * blocks + i];
      Vec y = {};
      for (int64_t n = 0; n < N; ++n) {
        Vec &hn = h[n * blocks + i];
        hn = stateStep(a, hn, dtx, splat(Bt[n]));
        y += Ct[n] * hn;
      }
      tiles.y[t * blocks + i] = y;
    }
    if (states) std::copy(h, h + N * blocks, states + t * N * blocks);
  }
}

// ---- Forward ----------------------------------------------------------------------------------------

struct ForwardScratch {
  ChunkTiles tiles;
  Vec *state = nullptr, *D = nullptr;

  ForwardScratch(Carver &c, const SsdForwardParams &p, const HeadShape &s) : tiles(c, p, s, false) {
    state = c.take<Vec>(s.stateVecs());
    D = c.take<Vec>(s.blocks);
  }
};

template <DType DT>
void forwardTask(const SsdForwardParams &p, int64_t b, int64_t h, int64_t tile, void *scratch) {
  const HeadShape s = tileShape(p.shape, tile);
  const Strides st(p.shape);
  const int64_t L = p.shape.seqlen, H = p.shape.heads, T = p.chunkLength, chunks = ceilDiv(L, T);
  const int64_t stateSize = s.headDim * s.N;
  Carver carver(scratch);
  ForwardScratch w(carver, p, s);
  const HeadConstants k = headConstants(p, s, h, w.D);
  auto stateRow = [&](auto *base, int64_t row) { return base ? base + (row * H + h) * stateSize : nullptr; };

  for (const Segment &seg : segmentsOf(p.cuSeqlens, p.sequences, p.shape.seqlen, b)) {
    loadState(stateRow(p.initialState, seg.row), s, w.state);
    // The segment's steps, a piece of one chunk at a time.
    for (int64_t t0 = seg.start; t0 < seg.end;) {
      const int64_t c = t0 / T, t1 = std::min(seg.end, (c + 1) * T), len = t1 - t0;
      w.tiles.load<DT>(p, s, k, b, h, t0, len);
      advance(w.tiles, s, 0, len, w.state, nullptr);
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t i = 0; i < s.blocks; ++i) {
          Vec y = w.tiles.y[t * s.blocks + i];
          if (k.D) y += k.D[i] * w.tiles.x[t * s.blocks + i];
          if (w.tiles.z) y *= silu(w.tiles.z[t * s.blocks + i]);
          w.tiles.y[t * s.blocks + i] = y;
        }
      }
      scatterPositions<DT>(w.tiles.y, len, s, p.out, (b * L + t0) * st.xRow + h * s.headDim + s.p0, st.xRow);
      if (p.checkpoints && (t1 == (c + 1) * T || t1 == L))
        storeCheckpoint(w.state, s, p.checkpoints + ((b * H + h) * chunks + c) * stateSize);
      t0 = t1;
    }
    if (p.lastState) storeState(w.state, s, stateRow(p.lastState, seg.row));
  }
}

// ---- Backward ---------------------------------------------------------------------------------------
//
// The driver walks the chunks from the last to the first; per chunk, every task (batch row, head)
// recomputes the chunk's states from the checkpoint before it and sweeps it backwards, carrying
// the adjoint of the state to the next (earlier) chunk in its own slot. dB and dC of a step are
// sums over the heads of a group: each task leaves its chunk's part (chunk x N floats) in its slot
// of a partial buffer, which the driver reduces over the group's heads in increasing order before
// the next chunk. So partials are batch x H x chunk x N floats whatever L is.

// What a task keeps from one chunk to the next, and its sums that the driver finishes.
struct BackwardCarry {
  Vec *carry = nullptr;                     // [task][n][block]: a_{t+1} g_{t+1}
  Vec *dD = nullptr;                        // [task][block]
  float *dA = nullptr, *ddtBias = nullptr;  // [task]
  float *dB = nullptr, *dC = nullptr;       // [task][chunk][N]: this chunk's sums over the positions
};

struct BackwardScratch {
  ChunkTiles tiles;
  Vec *D = nullptr;
  Vec *state = nullptr;              // [n][block]: the state a recomputation starts from
  Vec *states = nullptr;             // [chunk][n][block]: h_t of the chunk
  Vec *dout = nullptr;               // [chunk][blocks]; becomes dy (after the gate)
  Vec *dx = nullptr, *dz = nullptr;  // [chunk][blocks]
  Vec *dB = nullptr, *dC = nullptr;  // [N]: one step's sums over the positions, per lane
  Vec *gB = nullptr;                 // [blocks]: one step's sum over n of g B_n
  float *ddt = nullptr;              // [chunk]

  BackwardScratch(Carver &c, const SsdForwardParams &p, const HeadShape &s) : tiles(c, p, s, true) {
    const int64_t T = p.chunkLength;
    D = c.take<Vec>(s.blocks);
    state = c.take<Vec>(s.stateVecs());
    states = c.take<Vec>(T * s.stateVecs());
    dout = c.take<Vec>(T * s.blocks);
    dx = c.take<Vec>(T * s.blocks);
    if (p.z) dz = c.take<Vec>(T * s.blocks);
    dB = c.take<Vec>(s.N);
    dC = c.take<Vec>(s.N);
    gB = c.take<Vec>(s.blocks);
    ddt = c.take<float>(T);
  }
};

// One step of the reverse sweep over NB vectors of positions starting at block i0 (n outer, so
// that the sums over positions of dB_n and dC_n stay in registers): with g = C_n dy + carry, the
// adjoint of h_t, accumulates gB = sum_n g B_n, decayed += g a h_{t-1} (as g (h_t - dt x B_n)),
// dB_n += g dt x and dC_n += dy h_t (added to dB, dC unless `first`), and leaves a g in carry.
template <int NB>
void reverseStep(int64_t N, int64_t blocks, int64_t i0, Vec a, float dt, const float *Bt, const float *Ct, const Vec *x,
                 const Vec *dy, const Vec *ht, Vec *carry, bool first, Vec *dB, Vec *dC, Vec *gBOut, Vec &decayed) {
  Vec dtx[NB], gB[NB], dec[NB];
  for (int i = 0; i < NB; ++i) {
    dtx[i] = dt * x[i];
    gB[i] = Vec{};
    dec[i] = Vec{};
  }
  for (int64_t n = 0; n < N; ++n) {
    const Vec Bn = splat(Bt[n]), Cn = splat(Ct[n]);
    Vec db = {}, dc = {};
    for (int i = 0; i < NB; ++i) {
      const int64_t j = n * blocks + i0 + i;
      const Vec g = Cn * dy[i] + carry[j];
      const Vec hn = ht[j];
      gB[i] += g * Bn;
      dec[i] += g * (hn - dtx[i] * Bn);
      db += g * dtx[i];
      dc += dy[i] * hn;
      carry[j] = a * g;
    }
    dB[n] = first ? db : dB[n] + db;
    dC[n] = first ? dc : dC[n] + dc;
  }
  for (int i = 0; i < NB; ++i) {
    gBOut[i] = gB[i];
    decayed += dec[i];
  }
}

template <DType DT>
void backwardChunk(const SsdBackwardParams &bp, int64_t b, int64_t h, int64_t c, const std::vector<Segment> &segments,
                   const BackwardCarry &keep, void *scratch) {
  const SsdForwardParams &p = bp.fwd;
  const HeadShape s(p.shape);
  const Strides st(p.shape);
  const int64_t L = p.shape.seqlen, H = p.shape.heads, T = p.chunkLength, chunks = ceilDiv(L, T);
  const int64_t N = s.N, blocks = s.blocks, stateSize = s.headDim * s.N, task = b * H + h;
  Carver carver(scratch);
  BackwardScratch w(carver, p, s);
  const HeadConstants k = headConstants(p, s, h, w.D);
  auto stateRow = [&](auto *base, int64_t row) { return base ? base + (row * H + h) * stateSize : nullptr; };
  Vec *carry = keep.carry + task * s.stateVecs(), *dD = keep.dD + task * blocks;

  if (c == chunks - 1) {
    keep.dA[task] = keep.ddtBias[task] = 0;
    std::fill(dD, dD + blocks, Vec{});
  }
  const std::vector<Segment> nonEmpty = nonEmptyOf(segments);
  float dA = keep.dA[task], ddtBias = keep.ddtBias[task];
  float *dBOut = keep.dB + task * T * N, *dCOut = keep.dC + task * T * N;

  const int64_t t0 = c * T, len = std::min(T, L - t0), rows = (b * L + t0) * st.xRow + h * s.headDim + s.p0;
  w.tiles.load<DT>(p, s, k, b, h, t0, len);
  gatherPositions<DT>(bp.dout, rows, st.xRow, len, s, w.dout);

  // Recompute the chunk's states, from the checkpoint before it or from a sequence's start.
  size_t si = segmentAt(nonEmpty, t0);
  if (nonEmpty[si].start == t0)
    loadState(stateRow(p.initialState, nonEmpty[si].row), s, w.state);
  else
    loadCheckpoint(p.checkpoints + ((b * H + h) * chunks + c - 1) * stateSize, s, w.state);
  for (int64_t from = 0; from < len;) {
    const int64_t to = std::min(len, nonEmpty[si].end - t0);
    advance(w.tiles, s, from, to, w.state, w.states);
    from = to;
    if (from < len) loadState(stateRow(p.initialState, nonEmpty[++si].row), s, w.state);
  }

  // The gate: dy = dout silu(z), dz = dout y siluGrad(z) with y before the gate.
  if (w.tiles.z) {
    for (int64_t j = 0; j < len * blocks; ++j) {
      const Vec y = k.D ? w.tiles.y[j] + k.D[j % blocks] * w.tiles.x[j] : w.tiles.y[j];
      const Vec z = w.tiles.z[j], dout = w.dout[j];
      w.dz[j] = dout * y * siluGrad(z);
      w.dout[j] = dout * silu(z);
    }
  }

  // The reverse sweep.
  for (int64_t t = len - 1; t >= 0; --t) {
    const int64_t tg = t0 + t;
    while (nonEmpty[si].start > tg) --si;
    const Segment &seg = nonEmpty[si];
    if (tg == seg.end - 1) loadState(stateRow(bp.dLastState, seg.row), s, carry);
    const float dt = w.tiles.dt[t];
    const Vec a = splat(w.tiles.a[t]);
    const float *Bt = w.tiles.B + t * w.tiles.bcStride, *Ct = w.tiles.C + t * w.tiles.bcStride;
    const Vec *ht = w.states + t * s.stateVecs(), *x = w.tiles.x + t * blocks, *dy = w.dout + t * blocks;
    Vec decayed = {};
    // Groups of up to four vectors of positions, in increasing order.
    for (int64_t i0 = 0; i0 < blocks; i0 += 4) {
      const bool first = i0 == 0;
      switch (std::min<int64_t>(4, blocks - i0)) {
        case 1:
          reverseStep<1>(N, blocks, i0, a, dt, Bt, Ct, x + i0, dy + i0, ht, carry, first, w.dB, w.dC, w.gB + i0,
                         decayed);
          break;
        case 2:
          reverseStep<2>(N, blocks, i0, a, dt, Bt, Ct, x + i0, dy + i0, ht, carry, first, w.dB, w.dC, w.gB + i0,
                         decayed);
          break;
        case 3:
          reverseStep<3>(N, blocks, i0, a, dt, Bt, Ct, x + i0, dy + i0, ht, carry, first, w.dB, w.dC, w.gB + i0,
                         decayed);
          break;
        default:
          reverseStep<4>(N, blocks, i0, a, dt, Bt, Ct, x + i0, dy + i0, ht, carry, first, w.dB, w.dC, w.gB + i0,
                         decayed);
          break;
      }
    }
    Vec sumGBx = {};
    for (int64_t i = 0; i < blocks; ++i) {
      sumGBx += w.gB[i] * x[i];
      Vec dx = dt * w.gB[i];
      if (k.D) {
        dx += k.D[i] * dy[i];
        dD[i] += dy[i] * x[i];
      }
      w.dx[t * blocks + i] = dx;
    }
    for (int64_t n = 0; n < N; ++n) {
      dBOut[t * N + n] = simd::treeSum(w.dB[n]);
      dCOut[t * N + n] = simd::treeSum(w.dC[n]);
    }
    const float decayedSum = simd::treeSum(decayed);
    dA += dt * decayedSum;
    const float ddt = (simd::treeSum(sumGBx) + k.A * decayedSum) * w.tiles.dtGrad[t];
    w.ddt[t] = ddt;
    ddtBias += ddt;
    if (tg == seg.start && bp.dInitialState) storeState(carry, s, stateRow(bp.dInitialState, seg.row));
  }

  scatterPositions<DT>(w.dx, len, s, bp.dx, rows, st.xRow);
  if (bp.dz) scatterPositions<DT>(w.dz, len, s, bp.dz, rows, st.xRow);
  for (int64_t t = 0; t < len; ++t) storeElement<DT>(bp.ddt, (b * L + t0 + t) * st.dtRow + h, w.ddt[t]);
  keep.dA[task] = dA;
  keep.ddtBias[task] = ddtBias;
}

}  // namespace

// ---- Entry points -------------------------------------------------------------------------------------

void ssdForward(const SsdForwardParams &p) {
  const int64_t H = p.shape.heads, tiles = tilesPerHead(p.shape), tasks = p.shape.batch * H * tiles;
  ThreadPool::Session pool;
  WorkerScratch scratch(pool.threads(), scratchBytes<ForwardScratch>(p, tileShape(p.shape, 0)));
  dispatchDType(p.dtype, [&](auto dtype) {
    pool.parallelFor(tasks, [&](int64_t i, int worker) {
      forwardTask<decltype(dtype)::value>(p, i / tiles / H, i / tiles % H, i % tiles, scratch[worker]);
    });
  });
}

void ssdBackward(const SsdBackwardParams &bp) {
  const SsdForwardParams &p = bp.fwd;
  const int64_t batch = p.shape.batch, L = p.shape.seqlen, H = p.shape.heads, P = p.shape.headDim;
  const int64_t G = p.shape.groups, N = p.shape.dstate, headsPerGroup = H / G, tasks = batch * H;
  const int64_t T = p.chunkLength, chunks = ceilDiv(L, T);
  const HeadShape head(p.shape);

  HostArray<Vec> carry(tasks * head.stateVecs()), dDParts(tasks * head.blocks);
  HostArray<float> dA(tasks), ddtBias(tasks), dBParts(tasks * T * N), dCParts(tasks * T * N);
  const BackwardCarry keep{carry.data(), dDParts.data(), dA.data(), ddtBias.data(), dBParts.data(), dCParts.data()};
  std::vector<std::vector<Segment>> segments;
  for (int64_t b = 0; b < batch; ++b) segments.push_back(segmentsOf(p.cuSeqlens, p.sequences, p.shape.seqlen, b));

  // An empty sequence: its last state is its initial state, so dInitialState is dLastState. Done
  // here, not per chunk, because with L = 0 there is no chunk.
  if (bp.dInitialState) {
    const int64_t stateSize = P * N;
    for (int64_t b = 0; b < batch; ++b)
      for (const Segment &seg : segments[size_t(b)]) {
        if (seg.end > seg.start) continue;
        float *dst = bp.dInitialState + seg.row * H * stateSize;
        if (bp.dLastState)
          std::memcpy(dst, bp.dLastState + seg.row * H * stateSize, size_t(H * stateSize) * sizeof(float));
        else
          std::fill(dst, dst + H * stateSize, 0.0f);
      }
  }

  ThreadPool::Session pool;
  WorkerScratch scratch(pool.threads(), scratchBytes<BackwardScratch>(p, head));
  dispatchDType(p.dtype, [&](auto dtype) {
    constexpr DType DT = decltype(dtype)::value;
    for (int64_t c = chunks - 1; c >= 0; --c) {
      pool.parallelFor(tasks, [&](int64_t i, int worker) {
        backwardChunk<DT>(bp, i / H, i % H, c, segments[size_t(i / H)], keep, scratch[worker]);
      });
      // dB, dC of the chunk's steps: the heads of a group in increasing order.
      const int64_t t0 = c * T, len = std::min(T, L - t0);
      pool.parallelFor(batch * len, [&](int64_t i, int) {
        const int64_t b = i / len, t = i % len;
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t n = 0; n < N; ++n) {
            float sumB = 0, sumC = 0;
            for (int64_t h = g * headsPerGroup; h < (g + 1) * headsPerGroup; ++h) {
              const size_t src = size_t(((b * H + h) * T + t) * N + n);
              sumB += dBParts[src];
              sumC += dCParts[src];
            }
            const int64_t dst = ((b * L + t0 + t) * G + g) * N + n;
            storeElement<DT>(bp.dB, dst, sumB);
            storeElement<DT>(bp.dC, dst, sumC);
          }
        }
      });
    }
  });

  // Per head: sums over the batch rows, rows in increasing order.
  for (int64_t h = 0; h < H; ++h) {
    float a = 0, bias = 0, d = 0;
    for (int64_t b = 0; b < batch; ++b) {
      a += dA[size_t(b * H + h)];
      bias += ddtBias[size_t(b * H + h)];
    }
    bp.dA[h] = a;
    if (bp.ddtBias) bp.ddtBias[h] = bias;
    if (!bp.dD) continue;
    for (int64_t q = 0; q < P; ++q) {
      float sum = 0;
      for (int64_t b = 0; b < batch; ++b) sum += dDParts[size_t((b * H + h) * head.blocks + q / kLanes)][q % kLanes];
      if (p.dPerHead)
        d += sum;
      else
        bp.dD[h * P + q] = sum;
    }
    if (p.dPerHead) bp.dD[h] = d;
  }
}

}  // namespace ss::cpu::SS_CPU_ISA
