// The CPU backend's vectorised loops. This file is compiled once per instruction set (SS_CPU_ISA =
// baseline, avx2, avx512; see CMakeLists.txt) and the driver picks one table at run time.
//
// One SIMD lane per channel: a block of kLanes channels of one batch row moves through time
// together, each lane carrying its own state h[0..N). Channels of a task share their B and C
// groups, so a varying B_t[n] is one scalar broadcast to all lanes, and y_t needs no horizontal
// sum. Per (t, n) the forward costs one vector exp2 and three fused multiply-adds.
#include <algorithm>
#include <cstring>

#include "../common/scan_math.h"
#include "scan_kernels.h"
#include "simd.h"

#ifndef SS_CPU_ISA
#error "SS_CPU_ISA must name the instruction set this file is compiled for"
#endif

namespace ss::cpu::SS_CPU_ISA {
namespace {

using simd::kLanes;
using simd::splat;
using simd::Vec;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Carves one scratch buffer (64-byte aligned) into aligned arrays. With a null base it only
// measures, so the size computation and the use share one description of the layout.
class Carver {
 public:
  explicit Carver(void *base) : base_(static_cast<char *>(base)) {}
  template <class T>
  T *take(int64_t count) {
    used_ = (used_ + 63) & ~size_t(63);
    T *p = base_ ? reinterpret_cast<T *>(base_ + used_) : nullptr;
    used_ += size_t(count) * sizeof(T);
    return p;
  }
  size_t bytes() const { return used_ + 64; }

 private:
  char *base_;
  size_t used_ = 0;
};

template <DType DT>
float loadAt(const void *base, int64_t i) {
  return Element<DT>::load(static_cast<const typename Element<DT>::Storage *>(base)[i]);
}
template <DType DT>
void storeAt(void *base, int64_t i, float v) {
  static_cast<typename Element<DT>::Storage *>(base)[i] = Element<DT>::store(v);
}

// Copies the [N][len] tile of a varying B or C (rows n, contiguous in t) into [len][N] floats.
template <DType DT>
void transposeTile(const void *src, int64_t rowStart, int64_t L, int64_t N, int64_t len, float *dst) {
  for (int64_t n = 0; n < N; ++n) {
    const int64_t row = rowStart + n * L;
    for (int64_t t = 0; t < len; ++t) dst[t * N + n] = loadAt<DT>(src, row + t);
  }
}

// Steps per pass of gatherRows / scatterRows: a pass touches kTransposeSteps tile vectors (4 KB
// with 16 lanes), which stay in L1 while every lane visits them.
constexpr int64_t kTransposeSteps = 64;

// A block's rows (lane l: row rowStart + l * L, steps [0, len)) as a [t][lane] tile; lanes from
// `lanes` on read zeros. Each row is read sequentially, a pass of kTransposeSteps steps at a time:
// a whole chunk per lane would sweep more tile than L1 holds once per lane, and one step for all
// lanes at a time would read kLanes rows L * 4 bytes apart, which share L1 sets.
template <DType DT>
void gatherRows(const void *src, int64_t rowStart, int64_t L, int lanes, int64_t len, Vec *tile) {
  for (int64_t first = 0; first < len; first += kTransposeSteps) {
    const int64_t last = std::min(len, first + kTransposeSteps);
    for (int lane = 0; lane < kLanes; ++lane) {
      float *column = reinterpret_cast<float *>(tile) + lane;
      if (lane < lanes) {
        for (int64_t t = first; t < last; ++t) column[t * kLanes] = loadAt<DT>(src, rowStart + lane * L + t);
      } else {
        for (int64_t t = first; t < last; ++t) column[t * kLanes] = 0.0f;
      }
    }
  }
}

// The inverse: the first `lanes` lanes of a [t][lane] tile to their rows, rounded to DT.
template <DType DT>
void scatterRows(const Vec *tile, int lanes, int64_t len, void *dst, int64_t rowStart, int64_t L) {
  for (int64_t first = 0; first < len; first += kTransposeSteps) {
    const int64_t last = std::min(len, first + kTransposeSteps);
    for (int lane = 0; lane < lanes; ++lane) {
      const float *column = reinterpret_cast<const float *>(tile) + lane;
      for (int64_t t = first; t < last; ++t) storeAt<DT>(dst, rowStart + lane * L + t, column[t * kLanes]);
    }
  }
}

// Per-block constants of the channels in a task: A (scaled for exp2, and plain for the backward),
// fixed B and C, transposed so that lane = channel. Lanes past the task's last channel get zeros,
// which keep their state at zero and their gradients at zero.
struct BlockConstants {
  Vec *A2 = nullptr, *A = nullptr, *Bfixed = nullptr, *Cfixed = nullptr;  // [blocks][N]
  Vec *D = nullptr, *deltaBias = nullptr;                                 // [blocks]

  void carve(Carver &c, const ScanForwardParams &p, int64_t blocks, bool needPlainA) {
    const int64_t N = p.shape.dstate;
    A2 = c.take<Vec>(blocks * N);
    if (needPlainA) A = c.take<Vec>(blocks * N);
    if (!p.B.varying()) Bfixed = c.take<Vec>(blocks * N);
    if (!p.C.varying()) Cfixed = c.take<Vec>(blocks * N);
    D = c.take<Vec>(blocks);
    deltaBias = c.take<Vec>(blocks);
  }
  void fill(const ScanForwardParams &p, const Task &task, int64_t blocks) const {
    const int64_t N = p.shape.dstate;
    const float *Bf = static_cast<const float *>(p.B.data), *Cf = static_cast<const float *>(p.C.data);
    for (int64_t k = 0; k < blocks; ++k) {
      for (int lane = 0; lane < kLanes; ++lane) {
        const int64_t d = task.d0 + k * kLanes + lane;
        const bool valid = d < task.d1;
        D[k][lane] = valid && p.D ? p.D[d] : 0.0f;
        deltaBias[k][lane] = valid && p.deltaBias ? p.deltaBias[d] : 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          const float a = valid ? p.A[d * N + n] : 0.0f;
          A2[k * N + n][lane] = a * kLog2e;
          if (A) A[k * N + n][lane] = a;
          if (Bfixed) Bfixed[k * N + n][lane] = valid ? Bf[d * N + n] : 0.0f;
          if (Cfixed) Cfixed[k * N + n][lane] = valid ? Cf[d * N + n] : 0.0f;
        }
      }
    }
  }
};

// ---- Forward ------------------------------------------------------------------------------------

struct ForwardScratch {
  BlockConstants constants;
  Vec *state = nullptr;                                         // [blocks][N], carried across chunks
  float *Bt = nullptr, *Ct = nullptr;                           // [chunk][N], varying only
  Vec *u = nullptr, *dt = nullptr, *z = nullptr, *y = nullptr;  // [chunk]

  ForwardScratch(Carver &c, const ScanForwardParams &p, int64_t blocks) {
    const int64_t N = p.shape.dstate, T = p.chunkLength;
    constants.carve(c, p, blocks, false);
    state = c.take<Vec>(blocks * N);
    if (p.B.varying()) Bt = c.take<float>(T * N);
    if (p.C.varying()) Ct = c.take<float>(T * N);
    u = c.take<Vec>(T);
    dt = c.take<Vec>(T);
    if (p.z) z = c.take<Vec>(T);
    y = c.take<Vec>(T);
  }
};

// The recurrence over one chunk for one block of channels: h advances in place, y_t = C_t . h_t.
template <bool kVaryingB, bool kVaryingC>
void forwardChunk(int64_t len, int64_t N, const Vec *A2, const Vec *Bfixed, const Vec *Cfixed, const float *Bt,
                  const float *Ct, const Vec *u, const Vec *dt, Vec *h, Vec *y) {
  for (int64_t t = 0; t < len; ++t) {
    const Vec dtv = dt[t], dtu = dtv * u[t];
    Vec acc = {};
    for (int64_t n = 0; n < N; ++n) {
      const Vec a = simd::exp2(dtv * A2[n]);
      const Vec b = kVaryingB ? splat(Bt[t * N + n]) : Bfixed[n];
      const Vec c = kVaryingC ? splat(Ct[t * N + n]) : Cfixed[n];
      const Vec hn = stateStep(a, h[n], dtu, b);
      h[n] = hn;
      acc += c * hn;
    }
    y[t] = acc;
  }
}

template <DType DT>
void forwardTask(const ScanForwardParams &p, const Task &task, void *scratch) {
  const int64_t N = p.shape.dstate, L = p.shape.seqlen, dim = p.shape.dim, b = task.b;
  const int64_t T = p.chunkLength, chunks = ceilDiv(L, T);
  const int64_t blocks = ceilDiv(task.d1 - task.d0, kLanes);
  Carver carver(scratch);
  ForwardScratch s(carver, p, blocks);
  s.constants.fill(p, task, blocks);
  for (int64_t k = 0; k < blocks; ++k) {
    for (int lane = 0; lane < kLanes; ++lane) {
      const int64_t d = task.d0 + k * kLanes + lane;
      for (int64_t n = 0; n < N; ++n) {
        s.state[k * N + n][lane] = (d < task.d1 && p.initialState) ? p.initialState[(b * dim + d) * N + n] : 0.0f;
      }
    }
  }
  auto *chunkFn = p.B.varying() ? (p.C.varying() ? forwardChunk<true, true> : forwardChunk<true, false>)
                                : (p.C.varying() ? forwardChunk<false, true> : forwardChunk<false, false>);

  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t t0 = c * T, len = std::min(T, L - t0);
    if (s.Bt) transposeTile<DT>(p.B.data, (b * p.B.groups + task.groupB) * N * L + t0, L, N, len, s.Bt);
    if (s.Ct) transposeTile<DT>(p.C.data, (b * p.C.groups + task.groupC) * N * L + t0, L, N, len, s.Ct);
    for (int64_t k = 0; k < blocks; ++k) {
      // The block's rows as [t][lane] tiles; lanes past the last channel read zeros.
      const int64_t d0 = task.d0 + k * kLanes, rows = (b * dim + d0) * L + t0;
      const int lanes = int(std::min<int64_t>(kLanes, task.d1 - d0));
      gatherRows<DT>(p.u, rows, L, lanes, len, s.u);
      gatherRows<DT>(p.delta, rows, L, lanes, len, s.dt);
      if (s.z) gatherRows<DT>(p.z, rows, L, lanes, len, s.z);
      const Vec bias = s.constants.deltaBias[k], D = s.constants.D[k];
      for (int64_t t = 0; t < len; ++t) s.dt[t] = deltaToDt(s.dt[t], bias, p.deltaSoftplus);
      Vec *h = s.state + k * N;
      chunkFn(len, N, s.constants.A2 + k * N, s.constants.Bfixed ? s.constants.Bfixed + k * N : nullptr,
              s.constants.Cfixed ? s.constants.Cfixed + k * N : nullptr, s.Bt, s.Ct, s.u, s.dt, h, s.y);
      for (int64_t t = 0; t < len; ++t) {
        const Vec y = s.y[t] + D * s.u[t];
        s.y[t] = s.z ? y * silu(s.z[t]) : y;
      }
      scatterRows<DT>(s.y, lanes, len, p.out, rows, L);
      if (p.checkpoints) {
        for (int lane = 0; lane < lanes; ++lane) {
          float *ckpt = p.checkpoints + ((b * dim + d0 + lane) * chunks + c) * N;
          for (int64_t n = 0; n < N; ++n) ckpt[n] = h[n][lane];
        }
      }
    }
  }
  if (p.lastState) {
    for (int64_t k = 0; k < blocks; ++k) {
      for (int lane = 0; lane < kLanes; ++lane) {
        const int64_t d = task.d0 + k * kLanes + lane;
        if (d >= task.d1) break;
        for (int64_t n = 0; n < N; ++n) p.lastState[(b * dim + d) * N + n] = s.state[k * N + n][lane];
      }
    }
  }
}

// ---- Backward -----------------------------------------------------------------------------------

struct BackwardScratch {
  BlockConstants constants;
  // [blocks][N], carried across chunks: K = a_{t+1} g_{t+1} at the chunk's last step, and the
  // per-channel sums over time.
  Vec *carry = nullptr, *dA = nullptr, *dBFixed = nullptr, *dCFixed = nullptr;
  Vec *dD = nullptr, *ddeltaBias = nullptr;    // [blocks]
  Vec *hStart = nullptr;                       // [N]
  float *Bt = nullptr, *Ct = nullptr;          // [chunk][N], varying only
  Vec *h = nullptr;                            // [chunk][N]: recomputed states of one block
  Vec *dBLanes = nullptr, *dCLanes = nullptr;  // [chunk][N]: varying dB/dC, per lane, all blocks
  Vec *u = nullptr, *delta = nullptr, *dt = nullptr, *z = nullptr, *dy = nullptr, *y = nullptr;  // [chunk]
  Vec *ddt = nullptr, *du = nullptr;                                                             // [chunk]

  BackwardScratch(Carver &c, const ScanForwardParams &p, int64_t blocks) {
    const int64_t N = p.shape.dstate, T = p.chunkLength;
    constants.carve(c, p, blocks, true);
    carry = c.take<Vec>(blocks * N);
    dA = c.take<Vec>(blocks * N);
    if (!p.B.varying()) dBFixed = c.take<Vec>(blocks * N);
    if (!p.C.varying()) dCFixed = c.take<Vec>(blocks * N);
    dD = c.take<Vec>(blocks);
    ddeltaBias = c.take<Vec>(blocks);
    hStart = c.take<Vec>(N);
    if (p.B.varying()) {
      Bt = c.take<float>(T * N);
      dBLanes = c.take<Vec>(T * N);
    }
    if (p.C.varying()) {
      Ct = c.take<float>(T * N);
      dCLanes = c.take<Vec>(T * N);
    }
    h = c.take<Vec>(T * N);
    for (Vec **v : {&u, &delta, &dt, &dy, &y, &ddt, &du}) *v = c.take<Vec>(T);
    if (p.z) z = c.take<Vec>(T);
  }
};

// Recomputes one chunk's states from hStart: h[t][n], and y_t = C_t . h_t.
template <bool kVaryingB, bool kVaryingC>
void recomputeChunk(int64_t len, int64_t N, const Vec *A2, const Vec *Bfixed, const Vec *Cfixed, const float *Bt,
                    const float *Ct, const Vec *u, const Vec *dt, const Vec *hStart, Vec *h, Vec *y) {
  for (int64_t t = 0; t < len; ++t) {
    const Vec dtv = dt[t], dtu = dtv * u[t];
    const Vec *prev = t == 0 ? hStart : h + (t - 1) * N;
    Vec *cur = h + t * N;
    Vec acc = {};
    for (int64_t n = 0; n < N; ++n) {
      const Vec a = simd::exp2(dtv * A2[n]);
      const Vec b = kVaryingB ? splat(Bt[t * N + n]) : Bfixed[n];
      const Vec c = kVaryingC ? splat(Ct[t * N + n]) : Cfixed[n];
      cur[n] = stateStep(a, prev[n], dtu, b);
      acc += c * cur[n];
    }
    y[t] = acc;
  }
}

// The reverse sweep over one chunk. carry[n] enters as a_{t+1} g_{t+1} of the chunk's last step
// (dLastState for the sequence's last step) and leaves as a_{t0} g_{t0} for the chunk before.
template <bool kVaryingB, bool kVaryingC>
void reverseChunk(int64_t len, int64_t N, const BlockConstants &k, int64_t block, const float *Bt, const float *Ct,
                  const Vec *h, const Vec *u, const Vec *dt, const Vec *dy, Vec *carry, Vec *dA, Vec *dBFixed,
                  Vec *dCFixed, Vec *dBLanes, Vec *dCLanes, Vec *ddtOut, Vec *duOut) {
  const Vec *A2 = k.A2 + block * N, *A = k.A + block * N;
  const Vec *Bfixed = kVaryingB ? nullptr : k.Bfixed + block * N;
  const Vec *Cfixed = kVaryingC ? nullptr : k.Cfixed + block * N;
  for (int64_t t = len - 1; t >= 0; --t) {
    const Vec dtv = dt[t], uv = u[t], dyv = dy[t];
    Vec ddt = {}, du = {};
    for (int64_t n = 0; n < N; ++n) {
      const Vec b = kVaryingB ? splat(Bt[t * N + n]) : Bfixed[n];
      const Vec c = kVaryingC ? splat(Ct[t * N + n]) : Cfixed[n];
      const Vec g = c * dyv + carry[n];
      const StateGrads<Vec> gr = stateGrads(g, h[t * N + n], dtv, uv, A[n], b, dyv);
      ddt += gr.ddt;
      du += gr.du;
      dA[n] += gr.dA;
      if (kVaryingB)
        dBLanes[t * N + n] += gr.dB;
      else
        dBFixed[n] += gr.dB;
      if (kVaryingC)
        dCLanes[t * N + n] += gr.dC;
      else
        dCFixed[n] += gr.dC;
      carry[n] = simd::exp2(dtv * A2[n]) * g;
    }
    ddtOut[t] = ddt;
    duOut[t] = du;
  }
}

template <DType DT>
void backwardTask(const ScanBackwardParams &bp, const Task &task, const BackwardPartials &out, void *scratch) {
  const ScanForwardParams &p = bp.fwd;
  const int64_t N = p.shape.dstate, L = p.shape.seqlen, dim = p.shape.dim, batch = p.shape.batch, b = task.b;
  const int64_t T = p.chunkLength, chunks = ceilDiv(L, T);
  const int64_t blocks = ceilDiv(task.d1 - task.d0, kLanes);
  const bool varyingB = p.B.varying(), varyingC = p.C.varying();
  Carver carver(scratch);
  BackwardScratch s(carver, p, blocks);
  s.constants.fill(p, task, blocks);
  for (int64_t k = 0; k < blocks; ++k) {
    s.dD[k] = s.ddeltaBias[k] = Vec{};
    for (int64_t n = 0; n < N; ++n) {
      s.dA[k * N + n] = Vec{};
      if (s.dBFixed) s.dBFixed[k * N + n] = Vec{};
      if (s.dCFixed) s.dCFixed[k * N + n] = Vec{};
      for (int lane = 0; lane < kLanes; ++lane) {
        const int64_t d = task.d0 + k * kLanes + lane;
        s.carry[k * N + n][lane] = (d < task.d1 && bp.dLastState) ? bp.dLastState[(b * dim + d) * N + n] : 0.0f;
      }
    }
  }
  auto *recomputeFn = varyingB ? (varyingC ? recomputeChunk<true, true> : recomputeChunk<true, false>)
                               : (varyingC ? recomputeChunk<false, true> : recomputeChunk<false, false>);
  auto *reverseFn = varyingB ? (varyingC ? reverseChunk<true, true> : reverseChunk<true, false>)
                             : (varyingC ? reverseChunk<false, true> : reverseChunk<false, false>);

  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * T, len = std::min(T, L - t0);
    if (varyingB) {
      transposeTile<DT>(p.B.data, (b * p.B.groups + task.groupB) * N * L + t0, L, N, len, s.Bt);
      std::fill(s.dBLanes, s.dBLanes + len * N, Vec{});
    }
    if (varyingC) {
      transposeTile<DT>(p.C.data, (b * p.C.groups + task.groupC) * N * L + t0, L, N, len, s.Ct);
      std::fill(s.dCLanes, s.dCLanes + len * N, Vec{});
    }
    for (int64_t k = 0; k < blocks; ++k) {
      // Inputs of the block's channels as [t][lane] tiles (zeros past the last channel; dout goes
      // to dy for now), and the state the chunk starts from.
      const int64_t d0 = task.d0 + k * kLanes, rows = (b * dim + d0) * L + t0;
      const int lanes = int(std::min<int64_t>(kLanes, task.d1 - d0));
      gatherRows<DT>(p.u, rows, L, lanes, len, s.u);
      gatherRows<DT>(p.delta, rows, L, lanes, len, s.delta);
      gatherRows<DT>(bp.dout, rows, L, lanes, len, s.dy);
      if (s.z) gatherRows<DT>(p.z, rows, L, lanes, len, s.z);
      for (int lane = 0; lane < kLanes; ++lane) {
        const int64_t d = d0 + lane;
        const bool valid = lane < lanes;
        const float *start = !valid  ? nullptr
                             : c > 0 ? p.checkpoints + ((b * dim + d) * chunks + c - 1) * N
                                     : (p.initialState ? p.initialState + (b * dim + d) * N : nullptr);
        for (int64_t n = 0; n < N; ++n) s.hStart[n][lane] = start ? start[n] : 0.0f;
      }
      const Vec bias = s.constants.deltaBias[k], D = s.constants.D[k];
      for (int64_t t = 0; t < len; ++t) s.dt[t] = deltaToDt(s.delta[t], bias, p.deltaSoftplus);
      recomputeFn(len, N, s.constants.A2 + k * N, s.constants.Bfixed ? s.constants.Bfixed + k * N : nullptr,
                  s.constants.Cfixed ? s.constants.Cfixed + k * N : nullptr, s.Bt, s.Ct, s.u, s.dt, s.hStart, s.h, s.y);
      // The output gate: dy = dout silu(z) and dz = dout y siluGrad(z), y taken before the gate
      // (dz goes to the y tile, which is not needed after this).
      if (s.z) {
        for (int64_t t = 0; t < len; ++t) {
          const Vec dout = s.dy[t], y = s.y[t] + D * s.u[t];
          s.dy[t] = dout * silu(s.z[t]);
          s.y[t] = dout * y * siluGrad(s.z[t]);
        }
      }
      reverseFn(len, N, s.constants, k, s.Bt, s.Ct, s.h, s.u, s.dt, s.dy, s.carry + k * N, s.dA + k * N,
                s.dBFixed ? s.dBFixed + k * N : nullptr, s.dCFixed ? s.dCFixed + k * N : nullptr, s.dBLanes, s.dCLanes,
                s.ddt, s.du);
      Vec dD = s.dD[k], ddeltaBias = s.ddeltaBias[k];
      for (int64_t t = len - 1; t >= 0; --t) {
        s.du[t] += D * s.dy[t];
        s.ddt[t] = dtGradToDeltaGrad(s.ddt[t], s.delta[t], bias, p.deltaSoftplus);  // now d delta
        dD += s.dy[t] * s.u[t];
        ddeltaBias += s.ddt[t];
      }
      s.dD[k] = dD;
      s.ddeltaBias[k] = ddeltaBias;
      scatterRows<DT>(s.du, lanes, len, bp.du, rows, L);
      scatterRows<DT>(s.ddt, lanes, len, bp.ddelta, rows, L);
      if (bp.dz) scatterRows<DT>(s.y, lanes, len, bp.dz, rows, L);
    }
    // This task's share of the varying dB/dC over its channels: lanes summed in a fixed order.
    if (varyingB) {
      float *dst = out.dB + (task.partition * batch + b) * N * L + t0;
      for (int64_t t = 0; t < len; ++t)
        for (int64_t n = 0; n < N; ++n) dst[n * L + t] = simd::horizontalSum(s.dBLanes[t * N + n]);
    }
    if (varyingC) {
      float *dst = out.dC + (task.partition * batch + b) * N * L + t0;
      for (int64_t t = 0; t < len; ++t)
        for (int64_t n = 0; n < N; ++n) dst[n * L + t] = simd::horizontalSum(s.dCLanes[t * N + n]);
    }
  }

  for (int64_t k = 0; k < blocks; ++k) {
    for (int lane = 0; lane < kLanes; ++lane) {
      const int64_t d = task.d0 + k * kLanes + lane;
      if (d >= task.d1) break;
      const int64_t rowN = (b * dim + d) * N;
      for (int64_t n = 0; n < N; ++n) {
        if (bp.dInitialState) bp.dInitialState[rowN + n] = s.carry[k * N + n][lane];
        out.dA[rowN + n] = s.dA[k * N + n][lane];
        if (out.dBFixed) out.dBFixed[rowN + n] = s.dBFixed[k * N + n][lane];
        if (out.dCFixed) out.dCFixed[rowN + n] = s.dCFixed[k * N + n][lane];
      }
      out.dD[b * dim + d] = s.dD[k][lane];
      out.ddeltaBias[b * dim + d] = s.ddeltaBias[k][lane];
    }
  }
}

// ---- Stepwise update ----------------------------------------------------------------------------

// Loads up to kLanes consecutive elements as floats; lanes past `count` are zero.
template <DType DT>
Vec loadVec(const void *base, int64_t i, int64_t count) {
  Vec v = {};
  if (DT == DType::Float32 && count == kLanes) return simd::loadu(static_cast<const float *>(base) + i);
  for (int64_t j = 0; j < count; ++j) v[j] = loadAt<DT>(base, i + j);
  return v;
}
Vec loadFloats(const float *p, int64_t count) {
  if (count == kLanes) return simd::loadu(p);
  Vec v = {};
  for (int64_t j = 0; j < count; ++j) v[j] = p[j];
  return v;
}

template <DType DT>
void stateUpdateRows(const StateUpdateParams &p, int64_t begin, int64_t end) {
  const int64_t H = p.heads, P = p.headDim, N = p.dstate, headsPerGroup = H / p.groups;
  for (int64_t row = begin; row < end; ++row) {  // row = (i, h, pp) of (batch, H, P)
    const int64_t i = row / (H * P), h = (row / P) % H, pp = row % P;
    const int64_t slot = p.stateBatchIndices ? p.stateBatchIndices[i] : i;
    if (slot < 0) {  // padding row of a continuous batch
      storeAt<DT>(p.y, row, 0.0f);
      continue;
    }
    const float x = loadAt<DT>(p.x, row);
    const float dtRaw = loadAt<DT>(p.dt, p.scalarPerHead ? i * H + h : row);
    const float bias = p.dtBias ? p.dtBias[p.scalarPerHead ? h : h * P + pp] : 0.0f;
    const float dt = deltaToDt(dtRaw, bias, p.dtSoftplus);
    const int64_t bc = (i * p.groups + h / headsPerGroup) * N;
    float *state = p.state + ((slot * H + h) * P + pp) * N;
    const float *A = p.scalarPerHead ? nullptr : p.A + (h * P + pp) * N;
    const Vec dtv = splat(dt), dtx = splat(dt * x);
    const Vec aScalar = simd::exp2(splat(p.scalarPerHead ? dt * p.A[h] * kLog2e : 0.0f));
    Vec acc = {};
    for (int64_t n = 0; n < N; n += kLanes) {
      const int64_t count = std::min<int64_t>(kLanes, N - n);
      const Vec a = A ? simd::exp2(dtv * loadFloats(A + n, count) * kLog2e) : aScalar;
      const Vec hNew = stateStep(a, loadFloats(state + n, count), dtx, loadVec<DT>(p.B, bc + n, count));
      acc += loadVec<DT>(p.C, bc + n, count) * hNew;
      if (count == kLanes)
        simd::storeu(state + n, hNew);
      else
        for (int64_t j = 0; j < count; ++j) state[n + j] = hNew[j];
    }
    float y = simd::horizontalSum(acc);
    if (p.D) y += p.D[h * p.dStrideHead + pp * p.dStrideP] * x;
    if (p.z) y *= silu(loadAt<DT>(p.z, row));
    storeAt<DT>(p.y, row, y);
  }
}

// ---- Benchmark support --------------------------------------------------------------------------

float exp2Work(int64_t count) {
  constexpr int kChains = 8;  // independent dependency chains, like the N states of a step
  Vec x[kChains];
  for (int c = 0; c < kChains; ++c) x[c] = splat(-0.001f * float(c + 1));
  const Vec scale = splat(0.999f);
  for (int64_t i = 0; i < count; i += int64_t(kChains) * kLanes)
    for (int c = 0; c < kChains; ++c) x[c] = simd::exp2(x[c]) * scale - 1.0f;  // stays in [-1, 0]
  Vec sum = {};
  for (int c = 0; c < kChains; ++c) sum += x[c];
  return simd::horizontalSum(sum);
}

// ---- The table ----------------------------------------------------------------------------------

int64_t maxBlocks(int64_t maxChannels) { return ceilDiv(maxChannels, kLanes); }

size_t forwardScratchBytes(const ScanForwardParams &p, int64_t maxChannels) {
  Carver c(nullptr);
  ForwardScratch s(c, p, maxBlocks(maxChannels));
  return c.bytes();
}

size_t backwardScratchBytes(const ScanBackwardParams &p, int64_t maxChannels) {
  Carver c(nullptr);
  BackwardScratch s(c, p.fwd, maxBlocks(maxChannels));
  return c.bytes();
}

void forward(const ScanForwardParams &p, const Task &task, void *scratch) {
  switch (p.dtype) {
    case DType::Float32: return forwardTask<DType::Float32>(p, task, scratch);
    case DType::Float16: return forwardTask<DType::Float16>(p, task, scratch);
    case DType::BFloat16: return forwardTask<DType::BFloat16>(p, task, scratch);
  }
}

void backward(const ScanBackwardParams &p, const Task &task, const BackwardPartials &partials, void *scratch) {
  switch (p.fwd.dtype) {
    case DType::Float32: return backwardTask<DType::Float32>(p, task, partials, scratch);
    case DType::Float16: return backwardTask<DType::Float16>(p, task, partials, scratch);
    case DType::BFloat16: return backwardTask<DType::BFloat16>(p, task, partials, scratch);
  }
}

void stateUpdate(const StateUpdateParams &p, int64_t begin, int64_t end) {
  switch (p.dtype) {
    case DType::Float32: return stateUpdateRows<DType::Float32>(p, begin, end);
    case DType::Float16: return stateUpdateRows<DType::Float16>(p, begin, end);
    case DType::BFloat16: return stateUpdateRows<DType::BFloat16>(p, begin, end);
  }
}

}  // namespace

#define SS_STRINGIFY2(x) #x
#define SS_STRINGIFY(x) SS_STRINGIFY2(x)
extern const Kernels kernels = {SS_STRINGIFY(SS_CPU_ISA), kLanes,   forwardScratchBytes, forward,
                                backwardScratchBytes,     backward, stateUpdate,         exp2Work};

}  // namespace ss::cpu::SS_CPU_ISA
