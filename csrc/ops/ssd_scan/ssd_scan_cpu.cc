// The state space dual scan (Mamba-2) on the CPU: forward and backward in the recurrent form,
// compiled once per instruction set (cpu/isa.h).
//
// Work: a task is one (batch row, head); the thread pool runs the tasks. A head's state is a P x N
// matrix, kept N-major as [n][block of kLanes positions p] vectors (P padded to whole vectors with
// zeros, which stay zero), so that every step is, per vector of states,
//   h = a h + (dt x_p) B_n     and     y_p += C_n h
// with B_n and C_n broadcast: no horizontal sum in the forward, and one exp2 per (t, head) for
// a = exp(dt A). Time is walked in chunks of chunkLength steps; per chunk the task copies its
// inputs into small float tiles first (x, z, dout as [t][vector], B and C as [t][N]).
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

// Sizes of one task: P positions in `blocks` vectors, N states.
struct HeadShape {
  int64_t P, N, blocks;
  explicit HeadShape(const SsdShape &s) : P(s.headDim), N(s.dstate), blocks(ceilDiv(s.headDim, kLanes)) {}
  int64_t stateVecs() const { return N * blocks; }
};

// A (P, N) float32 matrix (a public state row) into the [n][block] vectors of a head; zeros when
// src is null.
void loadState(const float *src, const HeadShape &s, Vec *dst) {
  std::fill(dst, dst + s.stateVecs(), Vec{});
  if (!src) return;
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t n = 0; n < s.N; ++n) dst[n * s.blocks + p / kLanes][p % kLanes] = src[p * s.N + n];
}

void storeState(const Vec *src, const HeadShape &s, float *dst) {
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t n = 0; n < s.N; ++n) dst[p * s.N + n] = src[n * s.blocks + p / kLanes][p % kLanes];
}

// `count` rows of P elements, `stride` elements apart, into [row][block] vectors (zero padded).
template <DType DT>
void gatherPositions(const void *src, int64_t first, int64_t stride, int64_t count, const HeadShape &s, Vec *dst) {
  for (int64_t t = 0; t < count; ++t) {
    Vec *row = dst + t * s.blocks;
    std::fill(row, row + s.blocks, Vec{});
    const int64_t base = first + t * stride;
    for (int64_t p = 0; p < s.P; ++p) row[p / kLanes][p % kLanes] = loadElement<DT>(src, base + p);
  }
}

template <DType DT>
void scatterPositions(const Vec *src, int64_t count, const HeadShape &s, void *dst, int64_t first, int64_t stride) {
  for (int64_t t = 0; t < count; ++t) {
    const Vec *row = src + t * s.blocks;
    const int64_t base = first + t * stride;
    for (int64_t p = 0; p < s.P; ++p) storeElement<DT>(dst, base + p, row[p / kLanes][p % kLanes]);
  }
}

// `count` rows of N elements, `stride` apart, as floats [row][N].
template <DType DT>
void gatherStates(const void *src, int64_t first, int64_t stride, int64_t count, int64_t N, float *dst) {
  for (int64_t t = 0; t < count; ++t)
    for (int64_t n = 0; n < N; ++n) dst[t * N + n] = loadElement<DT>(src, first + t * stride + n);
}

// Per-head constants: A (plain and scaled for exp2), D over the positions, dtBias.
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
  float *B = nullptr, *C = nullptr;              // [chunk][N]

  ChunkTiles(Carver &c, const SsdForwardParams &p, const HeadShape &s, bool backward) {
    const int64_t T = p.chunkLength;
    x = c.take<Vec>(T * s.blocks);
    if (p.z) z = c.take<Vec>(T * s.blocks);
    y = c.take<Vec>(T * s.blocks);
    dt = c.take<float>(T);
    if (backward) dtGrad = c.take<float>(T);
    B = c.take<float>(T * s.N);
    C = c.take<float>(T * s.N);
  }

  template <DType DT>
  void load(const SsdForwardParams &p, const HeadShape &s, const HeadConstants &k, int64_t b, int64_t h, int64_t t0,
            int64_t len) {
    const Strides st(p.shape);
    const int64_t L = p.shape.seqlen, g = h / (p.shape.heads / p.shape.groups);
    const int64_t row0 = b * L + t0;
    gatherPositions<DT>(p.x, row0 * st.xRow + h * s.P, st.xRow, len, s, x);
    if (z) gatherPositions<DT>(p.z, row0 * st.xRow + h * s.P, st.xRow, len, s, z);
    gatherStates<DT>(p.B, row0 * st.bcRow + g * s.N, st.bcRow, len, s.N, B);
    gatherStates<DT>(p.C, row0 * st.bcRow + g * s.N, st.bcRow, len, s.N, C);
    for (int64_t t = 0; t < len; ++t) {
      const SsdDt d =
          ssdDt(loadElement<DT>(p.dt, row0 * st.dtRow + t * st.dtRow + h), k.bias, p.dtSoftplus, p.dtLow, p.dtHigh);
      dt[t] = d.dt;
      if (dtGrad) dtGrad[t] = d.grad;
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
    for (int64_t q = 0; q < s.P; ++q) D[q / kLanes][q % kLanes] = p.dPerHead ? p.D[h] : p.D[h * s.P + q];
    k.D = D;
  }
  return k;
}

// a = exp(dt A) for one step: one exp2 per (t, head), as the selective scan's exp2 of a lane.
float decay(float dt, const HeadConstants &k) { return simd::exp2(splat(dt * k.A2))[0]; }

// Steps [from, to) of a chunk (tile indices) from the state in h (advanced in place); y[t] = C_t . h_t
// before D and the gate. With `states`, also keeps every h_t ([t][n][block]).
void advance(const ChunkTiles &tiles, const HeadShape &s, const HeadConstants &k, int64_t from, int64_t to, Vec *h,
             Vec *states) {
  const int64_t N = s.N, blocks = s.blocks;
  for (int64_t t = from; t < to; ++t) {
    const float dt = tiles.dt[t];
    const Vec a = splat(decay(dt, k));
    const float *Bt = tiles.B + t * N, *Ct = tiles.C + t * N;
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
void forwardTask(const SsdForwardParams &p, int64_t b, int64_t h, void *scratch) {
  const HeadShape s(p.shape);
  const Strides st(p.shape);
  const int64_t L = p.shape.seqlen, H = p.shape.heads, T = p.chunkLength, chunks = ceilDiv(L, T);
  const int64_t stateSize = s.P * s.N;
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
      advance(w.tiles, s, k, 0, len, w.state, nullptr);
      for (int64_t t = 0; t < len; ++t) {
        for (int64_t i = 0; i < s.blocks; ++i) {
          Vec y = w.tiles.y[t * s.blocks + i];
          if (k.D) y += k.D[i] * w.tiles.x[t * s.blocks + i];
          if (w.tiles.z) y *= silu(w.tiles.z[t * s.blocks + i]);
          w.tiles.y[t * s.blocks + i] = y;
        }
      }
      scatterPositions<DT>(w.tiles.y, len, s, p.out, (b * L + t0) * st.xRow + h * s.P, st.xRow);
      if (p.checkpoints && (t1 == (c + 1) * T || t1 == L)) {
        float *ckpt = p.checkpoints + ((b * H + h) * chunks + c) * stateSize;
        for (int64_t n = 0; n < s.N; ++n)
          for (int64_t q = 0; q < s.P; ++q) ckpt[n * s.P + q] = w.state[n * s.blocks + q / kLanes][q % kLanes];
      }
      t0 = t1;
    }
    if (p.lastState) storeState(w.state, s, stateRow(p.lastState, seg.row));
  }
}

// ---- Backward ---------------------------------------------------------------------------------------

// Sums that the driver finishes in a fixed order: per task (b, h).
struct BackwardPartials {
  float *dB = nullptr, *dC = nullptr;       // [batch][H][L][N]
  float *dA = nullptr, *ddtBias = nullptr;  // [batch][H]
  float *dD = nullptr;                      // [batch][H][P]
};

struct BackwardScratch {
  ChunkTiles tiles;
  Vec *D = nullptr;
  Vec *state = nullptr;              // [n][block]: the state a recomputation starts from
  Vec *states = nullptr;             // [chunk][n][block]: h_t of the chunk
  Vec *carry = nullptr;              // [n][block]: a_{t+1} g_{t+1}, carried across chunks
  Vec *dout = nullptr;               // [chunk][blocks]; becomes dy (after the gate)
  Vec *dx = nullptr, *dz = nullptr;  // [chunk][blocks]
  Vec *dB = nullptr, *dC = nullptr;  // [N]: one step's sums over the positions, per lane
  Vec *dD = nullptr;                 // [blocks]
  float *ddt = nullptr;              // [chunk]

  BackwardScratch(Carver &c, const SsdForwardParams &p, const HeadShape &s) : tiles(c, p, s, true) {
    const int64_t T = p.chunkLength;
    D = c.take<Vec>(s.blocks);
    state = c.take<Vec>(s.stateVecs());
    states = c.take<Vec>(T * s.stateVecs());
    carry = c.take<Vec>(s.stateVecs());
    dout = c.take<Vec>(T * s.blocks);
    dx = c.take<Vec>(T * s.blocks);
    if (p.z) dz = c.take<Vec>(T * s.blocks);
    dB = c.take<Vec>(s.N);
    dC = c.take<Vec>(s.N);
    dD = c.take<Vec>(s.blocks);
    ddt = c.take<float>(T);
  }
};

template <DType DT>
void backwardTask(const SsdBackwardParams &bp, int64_t b, int64_t h, const BackwardPartials &out, void *scratch) {
  const SsdForwardParams &p = bp.fwd;
  const HeadShape s(p.shape);
  const Strides st(p.shape);
  const int64_t L = p.shape.seqlen, H = p.shape.heads, T = p.chunkLength, chunks = ceilDiv(L, T);
  const int64_t N = s.N, blocks = s.blocks, stateSize = s.P * s.N, task = b * H + h;
  Carver carver(scratch);
  BackwardScratch w(carver, p, s);
  const HeadConstants k = headConstants(p, s, h, w.D);
  auto stateRow = [&](auto *base, int64_t row) { return base ? base + (row * H + h) * stateSize : nullptr; };

  const std::vector<Segment> segments = segmentsOf(p.cuSeqlens, p.sequences, p.shape.seqlen, b),
                             nonEmpty = nonEmptyOf(segments);
  // An empty sequence: its last state is its initial state, so dInitialState is dLastState.
  for (const Segment &seg : segments) {
    if (seg.end > seg.start || !bp.dInitialState) continue;
    const float *src = stateRow(bp.dLastState, seg.row);
    float *dst = stateRow(bp.dInitialState, seg.row);
    for (int64_t i = 0; i < stateSize; ++i) dst[i] = src ? src[i] : 0.0f;
  }
  float dA = 0, ddtBias = 0;
  std::fill(w.dD, w.dD + blocks, Vec{});
  float *dBOut = out.dB + task * L * N, *dCOut = out.dC + task * L * N;

  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * T, len = std::min(T, L - t0), rows = (b * L + t0) * st.xRow + h * s.P;
    w.tiles.load<DT>(p, s, k, b, h, t0, len);
    gatherPositions<DT>(bp.dout, rows, st.xRow, len, s, w.dout);

    // Recompute the chunk's states, from the checkpoint before it or from a sequence's start.
    size_t si = segmentAt(nonEmpty, t0);
    if (nonEmpty[si].start == t0) {
      loadState(stateRow(p.initialState, nonEmpty[si].row), s, w.state);
    } else {
      const float *ckpt = p.checkpoints + ((b * H + h) * chunks + c - 1) * stateSize;
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t i = 0; i < blocks; ++i) w.state[n * blocks + i] = Vec{};
        for (int64_t q = 0; q < s.P; ++q) w.state[n * blocks + q / kLanes][q % kLanes] = ckpt[n * s.P + q];
      }
    }
    for (int64_t from = 0; from < len;) {
      const int64_t to = std::min(len, nonEmpty[si].end - t0);
      advance(w.tiles, s, k, from, to, w.state, w.states);
      from = to;
      if (from < len) loadState(stateRow(p.initialState, nonEmpty[++si].row), s, w.state);
    }

    // The gate: dy = dout silu(z), dz = dout y siluGrad(z) with y before the gate.
    for (int64_t t = 0; t < len; ++t) {
      for (int64_t i = 0; i < blocks; ++i) {
        const int64_t j = t * blocks + i;
        if (!w.tiles.z) continue;
        const Vec y = k.D ? w.tiles.y[j] + k.D[i] * w.tiles.x[j] : w.tiles.y[j];
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
      if (tg == seg.end - 1) loadState(stateRow(bp.dLastState, seg.row), s, w.carry);
      const float dt = w.tiles.dt[t];
      const Vec a = splat(decay(dt, k));
      const float *Bt = w.tiles.B + t * N, *Ct = w.tiles.C + t * N;
      const Vec *ht = w.states + t * s.stateVecs();
      std::fill(w.dB, w.dB + N, Vec{});
      std::fill(w.dC, w.dC + N, Vec{});
      Vec sumGBx = {}, sumDecayed = {};
      for (int64_t i = 0; i < blocks; ++i) {
        const Vec x = w.tiles.x[t * blocks + i], dy = w.dout[t * blocks + i], dtx = dt * x;
        Vec gB = {};
        for (int64_t n = 0; n < N; ++n) {
          const Vec Bn = splat(Bt[n]);
          const Vec g = Ct[n] * dy + w.carry[n * blocks + i];
          const Vec hn = ht[n * blocks + i];
          gB += g * Bn;
          sumDecayed += g * (hn - dtx * Bn);  // g a_t h_{t-1}
          w.dB[n] += g * dtx;
          w.dC[n] += dy * hn;
          w.carry[n * blocks + i] = a * g;
        }
        sumGBx += gB * x;
        Vec dx = dt * gB;
        if (k.D) {
          dx += k.D[i] * dy;
          w.dD[i] += dy * x;
        }
        w.dx[t * blocks + i] = dx;
      }
      for (int64_t n = 0; n < N; ++n) {
        dBOut[tg * N + n] = simd::treeSum(w.dB[n]);
        dCOut[tg * N + n] = simd::treeSum(w.dC[n]);
      }
      const float decayed = simd::treeSum(sumDecayed);
      dA += dt * decayed;
      const float ddt = (simd::treeSum(sumGBx) + k.A * decayed) * w.tiles.dtGrad[t];
      w.ddt[t] = ddt;
      ddtBias += ddt;
      if (tg == seg.start && bp.dInitialState) storeState(w.carry, s, stateRow(bp.dInitialState, seg.row));
    }

    scatterPositions<DT>(w.dx, len, s, bp.dx, rows, st.xRow);
    if (bp.dz) scatterPositions<DT>(w.dz, len, s, bp.dz, rows, st.xRow);
    for (int64_t t = 0; t < len; ++t) storeElement<DT>(bp.ddt, (b * L + t0 + t) * st.dtRow + h, w.ddt[t]);
  }
  out.dA[task] = dA;
  out.ddtBias[task] = ddtBias;
  for (int64_t q = 0; q < s.P; ++q) out.dD[task * s.P + q] = w.dD[q / kLanes][q % kLanes];
}

}  // namespace

// ---- Entry points -------------------------------------------------------------------------------------

void ssdForward(const SsdForwardParams &p) {
  const int64_t H = p.shape.heads, tasks = p.shape.batch * H;
  ThreadPool::Session pool;
  WorkerScratch scratch(pool.threads(), scratchBytes<ForwardScratch>(p, HeadShape(p.shape)));
  dispatchDType(p.dtype, [&](auto dtype) {
    pool.parallelFor(
        tasks, [&](int64_t i, int worker) { forwardTask<decltype(dtype)::value>(p, i / H, i % H, scratch[worker]); });
  });
}

void ssdBackward(const SsdBackwardParams &bp) {
  const SsdForwardParams &p = bp.fwd;
  const int64_t batch = p.shape.batch, L = p.shape.seqlen, H = p.shape.heads, P = p.shape.headDim;
  const int64_t G = p.shape.groups, N = p.shape.dstate, headsPerGroup = H / G;

  std::vector<float> dB(size_t(batch * H * L * N)), dC(size_t(batch * H * L * N));
  std::vector<float> dA(size_t(batch * H)), ddtBias(size_t(batch * H)), dD(size_t(batch * H * P));
  const BackwardPartials partials{dB.data(), dC.data(), dA.data(), ddtBias.data(), dD.data()};

  ThreadPool::Session pool;
  {
    WorkerScratch scratch(pool.threads(), scratchBytes<BackwardScratch>(p, HeadShape(p.shape)));
    dispatchDType(p.dtype, [&](auto dtype) {
      pool.parallelFor(batch * H, [&](int64_t i, int worker) {
        backwardTask<decltype(dtype)::value>(bp, i / H, i % H, partials, scratch[worker]);
      });
    });
  }

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
      for (int64_t b = 0; b < batch; ++b) sum += dD[size_t((b * H + h) * P + q)];
      if (p.dPerHead)
        d += sum;
      else
        bp.dD[h * P + q] = sum;
    }
    if (p.dPerHead) bp.dD[h] = d;
  }

  // dB, dC: the heads of a group in increasing order, per step (tasks of one batch row and chunk).
  const int64_t T = p.chunkLength, chunks = ceilDiv(L, T);
  dispatchDType(p.dtype, [&](auto dtype) {
    constexpr DType DT = decltype(dtype)::value;
    pool.parallelFor(batch * chunks, [&](int64_t i, int) {
      const int64_t b = i / chunks, t0 = (i % chunks) * T, t1 = std::min(L, t0 + T);
      for (int64_t t = t0; t < t1; ++t) {
        for (int64_t g = 0; g < G; ++g) {
          for (int64_t n = 0; n < N; ++n) {
            float sumB = 0, sumC = 0;
            for (int64_t h = g * headsPerGroup; h < (g + 1) * headsPerGroup; ++h) {
              const size_t src = size_t(((b * H + h) * L + t) * N + n);
              sumB += dB[src];
              sumC += dC[src];
            }
            const int64_t dst = ((b * L + t) * G + g) * N + n;
            storeElement<DT>(bp.dB, dst, sumB);
            storeElement<DT>(bp.dC, dst, sumC);
          }
        }
      }
    });
  });
}

}  // namespace ss::cpu::SS_CPU_ISA
