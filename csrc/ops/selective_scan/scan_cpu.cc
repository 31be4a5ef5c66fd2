// The selective scan on the CPU: forward and backward, compiled once per instruction set (cpu/isa.h).
//
// Work: a task is one batch row b and a range of consecutive channels [d0, d1) that share one B group
// and one C group; the thread pool runs the tasks. A task walks its range in blocks of kLanes
// channels, one channel per SIMD lane, and walks time in chunks of chunkLength steps, carrying each
// channel's state (N floats) from chunk to chunk. Channels of a task share their B and C groups, so a
// varying B_t[n] is one scalar broadcast to all lanes, and y_t needs no horizontal sum. Per (t, n)
// the forward costs one vector exp2 and three fused multiply-adds.
//
// Nothing of size L x N is ever stored: the forward writes the state at the end of each chunk (the
// checkpoints), and the backward recomputes one chunk at a time from them. Sums over channels or
// batch rows (dA, dD, ddeltaBias, fixed and varying dB/dC) are kept per task and finished in a fixed
// order, so results never depend on the thread count or on which thread ran which task.
//
// Packed sequences (cuSeqlens) cut a chunk into pieces at the sequence boundaries that fall inside
// it (a chunk with none is one piece: the plain path, no per-step test). At a sequence's first step
// its initial state replaces the carried state, and in the reverse sweep its dLastState replaces the
// carried gradient at its last step: a replacement, never a product with 0, so that not even an Inf
// or NaN crosses a boundary. Checkpoints stay one per chunk, whatever the boundaries.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../../common/scan_math.h"
#include "../../cpu/scratch.h"
#include "../../cpu/segments.h"
#include "../../cpu/simd.h"
#include "../../cpu/thread_pool.h"
#include "scan.h"

namespace ss::cpu::SS_CPU_ISA {
namespace {

using simd::kLanes;
using simd::splat;
using simd::Vec;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- Tasks ----------------------------------------------------------------------------------------

// A channel range shared by one B group and one C group (a "cell") is split into at most this
// many tasks, each a multiple of 16 channels (the widest SIMD block). The split depends on the
// shape only, so every sum over channels has the same order whatever the thread count; the
// backward keeps one partial dB/dC per task, so this also bounds that memory.
constexpr int64_t kMaxTasksPerCell = 16;
constexpr int64_t kTaskChannelMultiple = 16;

struct Task {
  int64_t b = 0, d0 = 0, d1 = 0;
  int64_t groupB = 0, groupC = 0;  // groups of the channels (0 when fixed)
  int64_t partition = 0;           // index of this channel range among all ranges of the op
};

// Sums over channels or over batch rows that the backward leaves for the driver to finish, so
// that their order never depends on which thread ran which task.
struct BackwardPartials {
  float *dB = nullptr, *dC = nullptr;            // varying: [partition][batch][N][L] (this task's channels)
  float *dA = nullptr;                           // [batch][dim][N]
  float *dBFixed = nullptr, *dCFixed = nullptr;  // [batch][dim][N]
  float *dD = nullptr, *ddeltaBias = nullptr;    // [batch][dim]
};

struct ChannelRange {
  int64_t d0, d1, groupB, groupC;
};

// The channel ranges of an op, in channel order (see kMaxTasksPerCell).
std::vector<ChannelRange> channelRanges(const ScanShape &shape, const Projection &B, const Projection &C) {
  const int64_t dim = shape.dim;
  const int64_t groupSizeB = B.varying() ? dim / B.groups : dim;
  const int64_t groupSizeC = C.varying() ? dim / C.groups : dim;
  std::vector<int64_t> cuts;
  for (int64_t d = 0; d < dim; d += groupSizeB) cuts.push_back(d);
  for (int64_t d = 0; d < dim; d += groupSizeC) cuts.push_back(d);
  cuts.push_back(dim);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());

  std::vector<ChannelRange> ranges;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    const int64_t c0 = cuts[i], c1 = cuts[i + 1];
    int64_t size = (c1 - c0 + kMaxTasksPerCell - 1) / kMaxTasksPerCell;
    size = (size + kTaskChannelMultiple - 1) / kTaskChannelMultiple * kTaskChannelMultiple;
    for (int64_t d = c0; d < c1; d += size) {
      ranges.push_back({d, std::min(c1, d + size), B.varying() ? d / groupSizeB : 0, C.varying() ? d / groupSizeC : 0});
    }
  }
  return ranges;
}

std::vector<Task> tasksFor(const ScanShape &shape, const std::vector<ChannelRange> &ranges) {
  std::vector<Task> tasks;
  tasks.reserve(size_t(shape.batch) * ranges.size());
  for (int64_t b = 0; b < shape.batch; ++b)
    for (size_t r = 0; r < ranges.size(); ++r)
      tasks.push_back({b, ranges[r].d0, ranges[r].d1, ranges[r].groupB, ranges[r].groupC, int64_t(r)});
  return tasks;
}

int64_t widestRange(const std::vector<ChannelRange> &ranges) {
  int64_t widest = 0;
  for (const auto &r : ranges) widest = std::max(widest, r.d1 - r.d0);
  return widest;
}

// p + offset, or null for a null p (a table that this op does not have).
template <class T>
T *offsetOrNull(T *p, int64_t offset) {
  return p ? p + offset : nullptr;
}

// Block k of a task's channels (a lane each) of row `row` of a (rows, dim, N) float32 state tensor:
// into h[N] (zeros past the task's last channel, and everywhere for a null tensor), and back.
void loadBlockState(const float *states, int64_t row, const Task &task, int64_t k, int64_t dim, int64_t N, Vec *h) {
  for (int lane = 0; lane < kLanes; ++lane) {
    const int64_t d = task.d0 + k * kLanes + lane;
    const float *src = states && d < task.d1 ? states + (row * dim + d) * N : nullptr;
    for (int64_t n = 0; n < N; ++n) h[n][lane] = src ? src[n] : 0.0f;
  }
}

void storeBlockState(const Vec *h, const Task &task, int64_t k, int64_t dim, int64_t N, float *states, int64_t row) {
  for (int lane = 0; lane < kLanes; ++lane) {
    const int64_t d = task.d0 + k * kLanes + lane;
    if (d >= task.d1) break;
    for (int64_t n = 0; n < N; ++n) states[(row * dim + d) * N + n] = h[n][lane];
  }
}

// An empty sequence leaves its state as it came: row `row` of src (zeros when null) to dst, for the
// task's channels.
void copyStateRow(const float *src, float *dst, int64_t row, const Task &task, int64_t dim, int64_t N) {
  for (int64_t i = (row * dim + task.d0) * N; i < (row * dim + task.d1) * N; ++i) dst[i] = src ? src[i] : 0.0f;
}

// Copies the [N][len] tile of a varying B or C (rows n, contiguous in t) into [len][N] floats.
template <DType DT>
void transposeTile(const void *src, int64_t rowStart, int64_t L, int64_t N, int64_t len, float *dst) {
  for (int64_t n = 0; n < N; ++n) {
    const int64_t row = rowStart + n * L;
    for (int64_t t = 0; t < len; ++t) dst[t * N + n] = loadElement<DT>(src, row + t);
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
        for (int64_t t = first; t < last; ++t) column[t * kLanes] = loadElement<DT>(src, rowStart + lane * L + t);
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
      for (int64_t t = first; t < last; ++t) storeElement<DT>(dst, rowStart + lane * L + t, column[t * kLanes]);
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

// The recurrence over one chunk for one block of channels, shared by the forward and the
// backward's recompute: h[n] enters as the state the chunk starts from and leaves as its last
// state; y_t = C_t . h_t. With kKeepStates every h_t is also written to states[t][n] (the backward
// needs them all; the forward only the last).
template <bool kVaryingB, bool kVaryingC, bool kKeepStates>
void scanChunk(int64_t len, int64_t N, const Vec *A2, const Vec *Bfixed, const Vec *Cfixed, const float *Bt,
               const float *Ct, const Vec *u, const Vec *dt, Vec *h, Vec *states, Vec *y) {
  for (int64_t t = 0; t < len; ++t) {
    const Vec dtv = dt[t], dtu = dtv * u[t];
    Vec acc = {};
    for (int64_t n = 0; n < N; ++n) {
      const Vec a = simd::exp2(dtv * A2[n]);
      const Vec b = kVaryingB ? splat(Bt[t * N + n]) : Bfixed[n];
      const Vec c = kVaryingC ? splat(Ct[t * N + n]) : Cfixed[n];
      const Vec hn = stateStep(a, h[n], dtu, b);
      h[n] = hn;
      if (kKeepStates) states[t * N + n] = hn;
      acc += c * hn;
    }
    y[t] = acc;
  }
}

using ScanChunkFn = void (*)(int64_t, int64_t, const Vec *, const Vec *, const Vec *, const float *, const float *,
                             const Vec *, const Vec *, Vec *, Vec *, Vec *);

template <bool kKeepStates>
ScanChunkFn scanChunkFor(bool varyingB, bool varyingC) {
  return varyingB ? (varyingC ? scanChunk<true, true, kKeepStates> : scanChunk<true, false, kKeepStates>)
                  : (varyingC ? scanChunk<false, true, kKeepStates> : scanChunk<false, false, kKeepStates>);
}

template <DType DT>
void forwardTask(const ScanForwardParams &p, const Task &task, void *scratch) {
  const int64_t N = p.shape.dstate, L = p.shape.seqlen, dim = p.shape.dim, b = task.b;
  const int64_t T = p.chunkLength, chunks = ceilDiv(L, T);
  const int64_t blocks = ceilDiv(task.d1 - task.d0, kLanes);
  Carver carver(scratch);
  ForwardScratch s(carver, p, blocks);
  s.constants.fill(p, task, blocks);
  const std::vector<Segment> segments = segmentsOf(p.cuSeqlens, p.sequences, L, b), nonEmpty = nonEmptyOf(segments);
  if (p.lastState) {
    for (const Segment &seg : segments)
      if (seg.start == seg.end) copyStateRow(p.initialState, p.lastState, seg.row, task, dim, N);
  }
  std::vector<Piece> pieces;
  const ScanChunkFn chunkFn = scanChunkFor<false>(p.B.varying(), p.C.varying());

  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t t0 = c * T, len = std::min(T, L - t0);
    piecesOf(nonEmpty, t0, len, pieces);
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
      for (const Piece &pc : pieces) {
        if (pc.starts) loadBlockState(p.initialState, pc.row, task, k, dim, N, h);
        chunkFn(pc.to - pc.from, N, s.constants.A2 + k * N, offsetOrNull(s.constants.Bfixed, k * N),
                offsetOrNull(s.constants.Cfixed, k * N), offsetOrNull(s.Bt, pc.from * N),
                offsetOrNull(s.Ct, pc.from * N), s.u + pc.from, s.dt + pc.from, h, nullptr, s.y + pc.from);
        if (pc.ends && p.lastState) storeBlockState(h, task, k, dim, N, p.lastState, pc.row);
      }
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
}

// ---- Backward -----------------------------------------------------------------------------------

struct BackwardScratch {
  BlockConstants constants;
  // [blocks][N], carried across chunks: K = a_{t+1} g_{t+1} at the chunk's last step, and the
  // per-channel sums over the steps of the current sequence.
  Vec *carry = nullptr, *dA = nullptr, *dBFixed = nullptr, *dCFixed = nullptr;
  Vec *dD = nullptr, *ddeltaBias = nullptr;  // [blocks]
  // The same sums over the sequences already finished, [blocks][N][lane] and [blocks][lane]: each
  // sequence's float32 sum is added once, in double, so that a packed call's sums are the sums of
  // running each sequence by itself, rounded once (and exactly the float32 sum for one sequence).
  double *dATotal = nullptr, *dBFixedTotal = nullptr, *dCFixedTotal = nullptr;
  double *dDTotal = nullptr, *ddeltaBiasTotal = nullptr;
  Vec *hStart = nullptr;                       // [N]: the chunk's start state (scanned in place)
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
    dATotal = c.take<double>(blocks * N * kLanes);
    if (!p.B.varying()) dBFixedTotal = c.take<double>(blocks * N * kLanes);
    if (!p.C.varying()) dCFixedTotal = c.take<double>(blocks * N * kLanes);
    dDTotal = c.take<double>(blocks * kLanes);
    ddeltaBiasTotal = c.take<double>(blocks * kLanes);
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

// The reverse sweep over a piece of one chunk. carry[n] enters as a_{t+1} g_{t+1} of the piece's
// last step (dLastState for the sequence's last step) and leaves as a_{t0} g_{t0} for the step before
// (dInitialState at the sequence's first step).
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

// The backward of one task, in stages per chunk (last chunk first) and per block of channels:
// load the block's inputs (startBlockChunk), recompute the chunk's states from the state it starts
// from (recomputeStates), take the output gate apart (gateBackward), sweep the chunk in reverse
// (reverseStates), and write the chunk's per-position gradients (writeBlockChunk). The task's sums
// go out at the end (writeTaskSums).
template <DType DT>
struct BackwardTask {
  const ScanBackwardParams &bp;
  const ScanForwardParams &p;
  const Task &task;
  const BackwardPartials &out;
  BackwardScratch &s;
  const int64_t N, L, dim, batch, b, T, chunks, blocks;
  const std::vector<Segment> segments, nonEmpty;
  std::vector<Piece> pieces;  // of the current chunk

  BackwardTask(const ScanBackwardParams &bp_, const Task &task_, const BackwardPartials &out_, BackwardScratch &s_)
      : bp(bp_),
        p(bp_.fwd),
        task(task_),
        out(out_),
        s(s_),
        N(p.shape.dstate),
        L(p.shape.seqlen),
        dim(p.shape.dim),
        batch(p.shape.batch),
        b(task_.b),
        T(p.chunkLength),
        chunks(ceilDiv(L, T)),
        blocks(ceilDiv(task_.d1 - task_.d0, kLanes)),
        segments(segmentsOf(p.cuSeqlens, p.sequences, L, b)),
        nonEmpty(nonEmptyOf(segments)) {}

  // Sums at zero (the carried gradient is set at each sequence's last step); an empty sequence's
  // dInitialState is its dLastState.
  void initSums() const {
    for (int64_t k = 0; k < blocks; ++k) {
      s.dD[k] = s.ddeltaBias[k] = Vec{};
      for (int64_t n = 0; n < N; ++n) {
        s.dA[k * N + n] = Vec{};
        if (s.dBFixed) s.dBFixed[k * N + n] = Vec{};
        if (s.dCFixed) s.dCFixed[k * N + n] = Vec{};
      }
    }
    for (double *total : {s.dATotal, s.dBFixedTotal, s.dCFixedTotal})
      if (total) std::fill(total, total + blocks * N * kLanes, 0.0);
    std::fill(s.dDTotal, s.dDTotal + blocks * kLanes, 0.0);
    std::fill(s.ddeltaBiasTotal, s.ddeltaBiasTotal + blocks * kLanes, 0.0);
    if (bp.dInitialState) {
      for (const Segment &seg : segments)
        if (seg.start == seg.end) copyStateRow(bp.dLastState, bp.dInitialState, seg.row, task, dim, N);
    }
  }

  // The chunk's varying B/C as [t][N] tables, and its varying dB/dC per lane at zero.
  void loadChunkTables(int64_t t0, int64_t len) const {
    if (s.Bt) {
      transposeTile<DT>(p.B.data, (b * p.B.groups + task.groupB) * N * L + t0, L, N, len, s.Bt);
      std::fill(s.dBLanes, s.dBLanes + len * N, Vec{});
    }
    if (s.Ct) {
      transposeTile<DT>(p.C.data, (b * p.C.groups + task.groupC) * N * L + t0, L, N, len, s.Ct);
      std::fill(s.dCLanes, s.dCLanes + len * N, Vec{});
    }
  }

  // Inputs of block k's channels as [t][lane] tiles (zeros past the last channel; dout goes to dy
  // for now), and dt.
  void startBlockChunk(int64_t k, int64_t rows, int lanes, int64_t len) const {
    gatherRows<DT>(p.u, rows, L, lanes, len, s.u);
    gatherRows<DT>(p.delta, rows, L, lanes, len, s.delta);
    gatherRows<DT>(bp.dout, rows, L, lanes, len, s.dy);
    if (s.z) gatherRows<DT>(p.z, rows, L, lanes, len, s.z);
    const Vec bias = s.constants.deltaBias[k];
    for (int64_t t = 0; t < len; ++t) s.dt[t] = deltaToDt(s.delta[t], bias, p.deltaSoftplus);
  }

  // The chunk's states h_t of block k, piece by piece: from the previous chunk's checkpoint (which
  // holds the state of the sequence the chunk starts in), or from a sequence's initial state at its
  // first step.
  void recomputeStates(ScanChunkFn recompute, int64_t c, int64_t k) const {
    if (!pieces.front().starts) {
      for (int lane = 0; lane < kLanes; ++lane) {
        const int64_t d = task.d0 + k * kLanes + lane;
        const float *start = d < task.d1 ? p.checkpoints + ((b * dim + d) * chunks + c - 1) * N : nullptr;
        for (int64_t n = 0; n < N; ++n) s.hStart[n][lane] = start ? start[n] : 0.0f;
      }
    }
    for (const Piece &pc : pieces) {
      if (pc.starts) loadBlockState(p.initialState, pc.row, task, k, dim, N, s.hStart);
      recompute(pc.to - pc.from, N, s.constants.A2 + k * N, offsetOrNull(s.constants.Bfixed, k * N),
                offsetOrNull(s.constants.Cfixed, k * N), offsetOrNull(s.Bt, pc.from * N),
                offsetOrNull(s.Ct, pc.from * N), s.u + pc.from, s.dt + pc.from, s.hStart, s.h + pc.from * N,
                s.y + pc.from);
    }
  }

  // The reverse sweep of block k over the chunk, piece by piece, last first: the carried gradient
  // becomes dLastState at a sequence's last step and goes out as dInitialState past its first,
  // where the sequence's sums join the totals.
  template <bool kVaryingB, bool kVaryingC>
  void reverseStates(int64_t k) const {
    Vec *carry = s.carry + k * N;
    for (size_t i = pieces.size(); i-- > 0;) {
      const Piece &pc = pieces[i];
      if (pc.ends) loadBlockState(bp.dLastState, pc.row, task, k, dim, N, carry);
      reverseChunk<kVaryingB, kVaryingC>(
          pc.to - pc.from, N, s.constants, k, offsetOrNull(s.Bt, pc.from * N), offsetOrNull(s.Ct, pc.from * N),
          s.h + pc.from * N, s.u + pc.from, s.dt + pc.from, s.dy + pc.from, carry, s.dA + k * N,
          offsetOrNull(s.dBFixed, k * N), offsetOrNull(s.dCFixed, k * N), offsetOrNull(s.dBLanes, pc.from * N),
          offsetOrNull(s.dCLanes, pc.from * N), s.ddt + pc.from, s.du + pc.from);
      finishSteps(k, pc.from, pc.to);
      if (pc.starts) {
        if (bp.dInitialState) storeBlockState(carry, task, k, dim, N, bp.dInitialState, pc.row);
        closeSequenceSums(k);
      }
    }
  }

  // Steps [from, to) of the chunk, last first: du gains the skip term, ddt becomes d delta, and dD
  // and ddeltaBias gain them.
  void finishSteps(int64_t k, int64_t from, int64_t to) const {
    const Vec bias = s.constants.deltaBias[k], D = s.constants.D[k];
    Vec dD = s.dD[k], ddeltaBias = s.ddeltaBias[k];
    for (int64_t t = to - 1; t >= from; --t) {
      s.du[t] += D * s.dy[t];
      s.ddt[t] = dtGradToDeltaGrad(s.ddt[t], s.delta[t], bias, p.deltaSoftplus);  // now d delta
      dD += s.dy[t] * s.u[t];
      ddeltaBias += s.ddt[t];
    }
    s.dD[k] = dD;
    s.ddeltaBias[k] = ddeltaBias;
  }

  // A sequence's sums of block k join the totals (see BackwardScratch) and restart at zero.
  void closeSequenceSums(int64_t k) const {
    auto close = [](Vec &sum, double *total) {
      for (int lane = 0; lane < kLanes; ++lane) total[lane] += double(sum[lane]);
      sum = Vec{};
    };
    for (int64_t n = 0; n < N; ++n) {
      close(s.dA[k * N + n], s.dATotal + (k * N + n) * kLanes);
      if (s.dBFixed) close(s.dBFixed[k * N + n], s.dBFixedTotal + (k * N + n) * kLanes);
      if (s.dCFixed) close(s.dCFixed[k * N + n], s.dCFixedTotal + (k * N + n) * kLanes);
    }
    close(s.dD[k], s.dDTotal + k * kLanes);
    close(s.ddeltaBias[k], s.ddeltaBiasTotal + k * kLanes);
  }

  // The output gate: dy = dout silu(z) and dz = dout y siluGrad(z), y taken before the gate (dz goes
  // to the y tile, which is not needed after this).
  void gateBackward(int64_t k, int64_t len) const {
    if (!s.z) return;
    const Vec D = s.constants.D[k];
    for (int64_t t = 0; t < len; ++t) {
      const Vec dout = s.dy[t], y = s.y[t] + D * s.u[t];
      s.dy[t] = dout * silu(s.z[t]);
      s.y[t] = dout * y * siluGrad(s.z[t]);
    }
  }

  // du, ddelta and dz of block k's chunk go out.
  void writeBlockChunk(int64_t rows, int lanes, int64_t len) const {
    scatterRows<DT>(s.du, lanes, len, bp.du, rows, L);
    scatterRows<DT>(s.ddt, lanes, len, bp.ddelta, rows, L);
    if (bp.dz) scatterRows<DT>(s.y, lanes, len, bp.dz, rows, L);
  }

  // This task's share of the chunk's varying dB/dC over its channels: lanes summed in a fixed order.
  void writeChunkVaryingSums(int64_t t0, int64_t len) const {
    if (s.dBLanes) {
      float *dst = out.dB + (task.partition * batch + b) * N * L + t0;
      for (int64_t t = 0; t < len; ++t)
        for (int64_t n = 0; n < N; ++n) dst[n * L + t] = simd::horizontalSum(s.dBLanes[t * N + n]);
    }
    if (s.dCLanes) {
      float *dst = out.dC + (task.partition * batch + b) * N * L + t0;
      for (int64_t t = 0; t < len; ++t)
        for (int64_t n = 0; n < N; ++n) dst[n * L + t] = simd::horizontalSum(s.dCLanes[t * N + n]);
    }
  }

  // The per-channel sums.
  void writeTaskSums() const {
    for (int64_t k = 0; k < blocks; ++k) {
      for (int lane = 0; lane < kLanes; ++lane) {
        const int64_t d = task.d0 + k * kLanes + lane;
        if (d >= task.d1) break;
        const int64_t rowN = (b * dim + d) * N;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t i = (k * N + n) * kLanes + lane;
          out.dA[rowN + n] = float(s.dATotal[i]);
          if (out.dBFixed) out.dBFixed[rowN + n] = float(s.dBFixedTotal[i]);
          if (out.dCFixed) out.dCFixed[rowN + n] = float(s.dCFixedTotal[i]);
        }
        out.dD[b * dim + d] = float(s.dDTotal[k * kLanes + lane]);
        out.ddeltaBias[b * dim + d] = float(s.ddeltaBiasTotal[k * kLanes + lane]);
      }
    }
  }

  void run() {
    s.constants.fill(p, task, blocks);
    initSums();
    const ScanChunkFn recompute = scanChunkFor<true>(p.B.varying(), p.C.varying());
    const bool varyingB = p.B.varying(), varyingC = p.C.varying();
    auto reverse =
        varyingB ? (varyingC ? &BackwardTask::reverseStates<true, true> : &BackwardTask::reverseStates<true, false>)
                 : (varyingC ? &BackwardTask::reverseStates<false, true> : &BackwardTask::reverseStates<false, false>);
    for (int64_t c = chunks - 1; c >= 0; --c) {
      const int64_t t0 = c * T, len = std::min(T, L - t0);
      piecesOf(nonEmpty, t0, len, pieces);
      loadChunkTables(t0, len);
      for (int64_t k = 0; k < blocks; ++k) {
        const int64_t d0 = task.d0 + k * kLanes, rows = (b * dim + d0) * L + t0;
        const int lanes = int(std::min<int64_t>(kLanes, task.d1 - d0));
        startBlockChunk(k, rows, lanes, len);
        recomputeStates(recompute, c, k);
        gateBackward(k, len);
        (this->*reverse)(k);
        writeBlockChunk(rows, lanes, len);
      }
      writeChunkVaryingSums(t0, len);
    }
    writeTaskSums();
  }
};

template <DType DT>
void backwardTask(const ScanBackwardParams &bp, const Task &task, const BackwardPartials &out, void *scratch) {
  Carver carver(scratch);
  BackwardScratch s(carver, bp.fwd, ceilDiv(task.d1 - task.d0, kLanes));
  BackwardTask<DT>(bp, task, out, s).run();
}

}  // namespace

// ---- Entry points -------------------------------------------------------------------------------

void scanForward(const ScanForwardParams &p) {
  const auto ranges = channelRanges(p.shape, p.B, p.C);
  const auto tasks = tasksFor(p.shape, ranges);
  ThreadPool::Session pool;
  WorkerScratch scratch(pool.threads(), scratchBytes<ForwardScratch>(p, ceilDiv(widestRange(ranges), kLanes)));
  dispatchDType(p.dtype, [&](auto dtype) {
    pool.parallelFor(int64_t(tasks.size()), [&](int64_t i, int worker) {
      forwardTask<decltype(dtype)::value>(p, tasks[size_t(i)], scratch[worker]);
    });
  });
}

void scanBackward(const ScanBackwardParams &bp) {
  const ScanForwardParams &p = bp.fwd;
  const int64_t batch = p.shape.batch, dim = p.shape.dim, L = p.shape.seqlen, N = p.shape.dstate;
  const auto ranges = channelRanges(p.shape, p.B, p.C);
  const auto tasks = tasksFor(p.shape, ranges);
  const int64_t partitions = int64_t(ranges.size());

  // Partial sums, finished below in a fixed order.
  HostArray<float> dBVarying(p.B.varying() ? partitions * batch * N * L : 0);
  HostArray<float> dCVarying(p.C.varying() ? partitions * batch * N * L : 0);
  HostArray<float> dA(batch * dim * N), dD(batch * dim), ddeltaBias(batch * dim);
  HostArray<float> dBFixed(p.B.varying() ? 0 : batch * dim * N);
  HostArray<float> dCFixed(p.C.varying() ? 0 : batch * dim * N);
  BackwardPartials partials;
  partials.dB = dBVarying.empty() ? nullptr : dBVarying.data();
  partials.dC = dCVarying.empty() ? nullptr : dCVarying.data();
  partials.dA = dA.data();
  partials.dBFixed = dBFixed.empty() ? nullptr : dBFixed.data();
  partials.dCFixed = dCFixed.empty() ? nullptr : dCFixed.data();
  partials.dD = dD.data();
  partials.ddeltaBias = ddeltaBias.data();

  ThreadPool::Session pool;
  {
    WorkerScratch scratch(pool.threads(), scratchBytes<BackwardScratch>(p, ceilDiv(widestRange(ranges), kLanes)));
    dispatchDType(p.dtype, [&](auto dtype) {
      pool.parallelFor(int64_t(tasks.size()), [&](int64_t i, int worker) {
        backwardTask<decltype(dtype)::value>(bp, tasks[size_t(i)], partials, scratch[worker]);
      });
    });
  }

  // Per-channel sums over the batch: rows b in increasing order.
  pool.parallelFor(dim, [&](int64_t d, int) {
    for (int64_t n = 0; n < N; ++n) {
      float a = 0, bf = 0, cf = 0;
      for (int64_t b = 0; b < batch; ++b) {
        const int64_t i = (b * dim + d) * N + n;
        a += dA[size_t(i)];
        if (!dBFixed.empty()) bf += dBFixed[size_t(i)];
        if (!dCFixed.empty()) cf += dCFixed[size_t(i)];
      }
      bp.dA[d * N + n] = a;
      if (!dBFixed.empty()) static_cast<float *>(bp.dB)[d * N + n] = bf;
      if (!dCFixed.empty()) static_cast<float *>(bp.dC)[d * N + n] = cf;
    }
    float sumD = 0, sumBias = 0;
    for (int64_t b = 0; b < batch; ++b) {
      sumD += dD[size_t(b * dim + d)];
      sumBias += ddeltaBias[size_t(b * dim + d)];
    }
    if (bp.dD) bp.dD[d] = sumD;
    if (bp.ddeltaBias) bp.ddeltaBias[d] = sumBias;
  });

  // Varying dB/dC: the partial of every channel range of a group, ranges in channel order.
  auto finishVarying = [&](const HostArray<float> &partial, const Projection &proj, bool isB, void *out) {
    const int64_t G = proj.groups;
    pool.parallelFor(batch * G * N, [&](int64_t i, int) {
      const int64_t b = i / (G * N), g = (i / N) % G, n = i % N;
      std::vector<const float *> sources;
      for (size_t r = 0; r < ranges.size(); ++r)
        if ((isB ? ranges[r].groupB : ranges[r].groupC) == g)
          sources.push_back(partial.data() + ((int64_t(r) * batch + b) * N + n) * L);
      const int64_t dst = ((b * G + g) * N + n) * L;
      dispatchDType(p.dtype, [&](auto dtype) {
        for (int64_t t = 0; t < L; ++t) {
          float s = 0;
          for (const float *src : sources) s += src[t];
          storeElement<decltype(dtype)::value>(out, dst + t, s);
        }
      });
    });
  };
  if (p.B.varying()) finishVarying(dBVarying, p.B, true, bp.dB);
  if (p.C.varying()) finishVarying(dCVarying, p.C, false, bp.dC);
}

}  // namespace ss::cpu::SS_CPU_ISA
