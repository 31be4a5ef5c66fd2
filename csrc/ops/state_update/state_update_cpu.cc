// selectiveStateUpdate on the CPU, compiled once per instruction set (cpu/isa.h). The rows of
// (batch, H, P) go to the thread pool in tasks of about kStatesPerTask states (a split by shape
// only). A task walks its rows as runs of one (batch row, head), or of one group of channels (HeadRun):
// what a run's rows share (the state slot, B and C as floats, and in the scalar-per-head form dt and the decay exp(dt
// A)) is computed once per run, not once per row; then its rows stream their N states kRowBlock rows at a time, so that
// each B/C vector is loaded once per block and the block's rows run independent FMA chains. The per-row scalars
// (dt = softplus(delta + bias), the gate silu(z)) are computed first for a tile of rows, kLanes rows per vector, with
// the vector forms of the scan's formulas (scan_math.h on cpu/simd.h's vectors): one scalar log1pf and expf per row
// were half of the step's time. Every row evaluates the same expressions in the same order whatever the split, so the
// results do not depend on the thread count.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "../../common/scan_math.h"
#include "../../cpu/simd.h"
#include "../../cpu/thread_pool.h"
#include "state_update.h"

namespace ss::cpu::SS_CPU_ISA {
namespace {

using simd::kLanes;
using simd::splat;
using simd::Vec;

constexpr int64_t kStatesPerTask = 8192;
constexpr int kRowBlock = 4;

// Loads up to kLanes consecutive floats; lanes past `count` are zero.
Vec loadFloats(const float *p, int64_t count) {
  if (count == kLanes) return simd::loadu(p);
  Vec v = {};
  for (int64_t j = 0; j < count; ++j) v[j] = p[j];
  return v;
}

// Hides v's origin from the compiler, so that it cannot fuse the product that made v into an FMA.
inline void opaque(Vec &v) {
#if defined(__x86_64__)
  asm("" : "+v"(v));
#elif defined(__aarch64__)
  asm("" : "+w"(v));
#endif
}

// stateStep (h = a h + dt x B) with its FMA contraction made explicit: a h fused, dt x B rounded
// first. Left to the compiler, which product is fused depends on the shape of the surrounding code
// (the previous version of this loop fused a h for float32 and float16 but varied with the path for
// bfloat16), so a change to the loop could change results by an ulp.
inline Vec stepState(Vec a, Vec h, Vec dtx, Vec b) {
  Vec input = dtx * b;
  opaque(input);
  return a * h + input;
}

// What the rows of a run share: the rows of one (batch row i, head h), or with P = 1 (the channels
// form) and A per channel, of consecutive heads h, h + 1, ... of one group, which are then
// contiguous in every tensor and indexed as positions p = 0, 1, ... of head h.
struct HeadRun {
  int64_t h;
  int64_t firstRow;  // the flat (batch, H, P) index of position p = 0
  int64_t dStrideP;  // of D along p: p.dStrideP, or p.dStrideHead when the run spans heads
  float *state;      // the state row of p = 0 (rows of N, one per p)
  const float *B, *C;
  float dt;  // scalar-per-head form: the head's dt, and its decay exp(dt A) in every lane
  Vec aScalar;
};

// The per-row scalars of kRowTile consecutive rows of a run: dt (the per-channel forms) and the gate silu(z) (1 where
// there is no z), indexed from the tile's first row.
constexpr int64_t kRowTile = 4 * kLanes;
struct RowScalars {
  alignas(64) float dt[kRowTile];
  alignas(64) float gate[kRowTile];
};

// `lanes` consecutive elements of a tensor from `offset`, as floats; lanes past them are zero.
template <DType DT>
Vec loadRow(const void *base, int64_t offset, int64_t lanes) {
  if constexpr (DT == DType::Float32) return loadFloats(static_cast<const float *>(base) + offset, lanes);
  alignas(64) float values[kLanes] = {};
  for (int64_t j = 0; j < lanes; ++j) values[j] = loadElement<DT>(base, offset + j);
  return simd::loadu(values);
}

// RowScalars of rows q0 .. q0 + count - 1 (count <= kRowTile) of a run.
template <DType DT, bool kScalarA>
void rowScalars(const StateUpdateParams &p, const HeadRun &run, int64_t q0, int64_t count, RowScalars &out) {
  const int64_t P = p.headDim;
  for (int64_t i = 0; i < count; i += kLanes) {
    const int64_t lanes = std::min<int64_t>(kLanes, count - i), row = run.firstRow + q0 + i;
    if (!kScalarA) {
      const Vec bias = p.dtBias ? loadFloats(p.dtBias + run.h * P + q0 + i, lanes) : Vec{};
      simd::storeu(out.dt + i, deltaToDt(loadRow<DT>(p.dt, row, lanes), bias, p.dtSoftplus));
    }
    simd::storeu(out.gate + i, p.z ? silu(loadRow<DT>(p.z, row, lanes)) : splat(1.0f));
  }
}

// Rows p0 .. p0 + R - 1 of a run, whose RowScalars `s` start at row s0; kScalarA: the scalar-per-head form. The full
// vectors of N and the tail are separate instances of one column step, so that the loop over the full ones has no
// branch.
template <DType DT, int R, bool kScalarA>
void rowBlock(const StateUpdateParams &p, const HeadRun &run, int64_t p0, const RowScalars &s, int64_t s0) {
  const int64_t N = p.dstate, P = p.headDim;
  float x[R];
  Vec dtv[R], dtx[R], acc[R];
  for (int r = 0; r < R; ++r) {
    x[r] = loadElement<DT>(p.x, run.firstRow + p0 + r);
    const float dt = kScalarA ? run.dt : s.dt[p0 - s0 + r];
    dtv[r] = splat(dt);
    dtx[r] = splat(dt * x[r]);
    acc[r] = Vec{};
  }
  float *state = run.state + p0 * N;
  const float *A = kScalarA ? nullptr : p.A + (run.h * P + p0) * N;
  const auto column = [&](int64_t n, auto full) {
    const int64_t count = decltype(full)::value ? kLanes : N - n;
    const Vec b = loadFloats(run.B + n, count), c = loadFloats(run.C + n, count);
    for (int r = 0; r < R; ++r) {
      float *st = state + r * N + n;
      const Vec a = kScalarA ? run.aScalar : simd::exp2(dtv[r] * loadFloats(A + r * N + n, count) * kLog2e);
      const Vec hNew = stepState(a, loadFloats(st, count), dtx[r], b);
      acc[r] += c * hNew;
      if (decltype(full)::value)
        simd::storeu(st, hNew);
      else
        for (int64_t j = 0; j < count; ++j) st[j] = hNew[j];
    }
  };
  int64_t n = 0;
  for (; n + kLanes <= N; n += kLanes) column(n, std::true_type{});
  if (n < N) column(n, std::false_type{});
  for (int r = 0; r < R; ++r) {
    const int64_t pp = p0 + r;
    float y = simd::horizontalSum(acc[r]);
    if (p.D) y += p.D[run.h * p.dStrideHead + pp * run.dStrideP] * x[r];
    if (p.z) y *= s.gate[pp - s0];
    storeElement<DT>(p.y, run.firstRow + pp, y);
  }
}

template <DType DT, bool kScalarA>
void rowBlocks(const StateUpdateParams &p, const HeadRun &run, int64_t pp, int64_t rows) {
  RowScalars s;
  for (int64_t s0 = pp; s0 < pp + rows; s0 += kRowTile) {
    const int64_t end = std::min(pp + rows, s0 + kRowTile);
    rowScalars<DT, kScalarA>(p, run, s0, end - s0, s);
    int64_t q = s0;
    for (; q + kRowBlock <= end; q += kRowBlock) rowBlock<DT, kRowBlock, kScalarA>(p, run, q, s, s0);
    for (; q < end; ++q) rowBlock<DT, 1, kScalarA>(p, run, q, s, s0);
  }
}

// The rows pp .. pp + rows - 1 of the run that starts at (batch row i, head h). bcBuf holds B and C as floats for a
// 16-bit dtype, converted once per (batch row, group): bcOffset says which.
template <DType DT>
void headRows(const StateUpdateParams &p, int64_t i, int64_t h, int64_t pp, int64_t rows, std::vector<float> &bcBuf,
              int64_t &bcOffset) {
  const int64_t H = p.heads, P = p.headDim, N = p.dstate;
  HeadRun run{};
  run.h = h;
  run.firstRow = (i * H + h) * P;
  run.dStrideP = P == 1 ? p.dStrideHead : p.dStrideP;
  const int64_t slot = p.stateBatchIndices ? p.stateBatchIndices[i] : i;
  if (slot < 0) {  // padding row of a continuous batch
    for (int64_t q = pp; q < pp + rows; ++q) storeElement<DT>(p.y, run.firstRow + q, 0.0f);
    return;
  }
  run.state = p.state + (slot * H + h) * P * N;
  const int64_t bc = (i * p.groups + h / (H / p.groups)) * N;
  if (DT == DType::Float32) {
    run.B = static_cast<const float *>(p.B) + bc;
    run.C = static_cast<const float *>(p.C) + bc;
  } else {
    if (bc != bcOffset) {
      for (int64_t n = 0; n < N; ++n) {
        bcBuf[size_t(n)] = loadElement<DT>(p.B, bc + n);
        bcBuf[size_t(N + n)] = loadElement<DT>(p.C, bc + n);
      }
      bcOffset = bc;
    }
    run.B = bcBuf.data();
    run.C = bcBuf.data() + N;
  }
  if (p.scalarPerHead) {
    run.dt = deltaToDt(loadElement<DT>(p.dt, i * H + h), p.dtBias ? p.dtBias[h] : 0.0f, p.dtSoftplus);
    run.aScalar = simd::exp2(splat(run.dt * p.A[h] * kLog2e));
  }
  if (p.scalarPerHead)
    rowBlocks<DT, true>(p, run, pp, rows);
  else
    rowBlocks<DT, false>(p, run, pp, rows);
}

// The flat rows begin .. end of (batch, H, P), as runs (HeadRun).
template <DType DT>
void stateUpdateRows(const StateUpdateParams &p, int64_t begin, int64_t end) {
  const int64_t H = p.heads, P = p.headDim, headsPerGroup = H / p.groups;
  const bool spanHeads = P == 1 && !p.scalarPerHead;
  std::vector<float> bcBuf(DT == DType::Float32 ? 0 : size_t(2 * p.dstate));
  int64_t bcOffset = -1;
  int64_t pp = begin % P, h = begin / P % H, i = begin / P / H;
  for (int64_t row = begin; row < end;) {
    const int64_t rows = std::min(spanHeads ? headsPerGroup - h % headsPerGroup : P - pp, end - row);
    headRows<DT>(p, i, h, pp, rows, bcBuf, bcOffset);
    row += rows;
    pp = 0;
    h += spanHeads ? rows : 1;
    if (h == H) h = 0, ++i;
  }
}

}  // namespace

void stateUpdate(const StateUpdateParams &p) {
  const int64_t rows = p.batch * p.heads * p.headDim;
  const int64_t rowsPerTask = std::max<int64_t>(1, kStatesPerTask / std::max<int64_t>(1, p.dstate));
  ThreadPool::Session pool;
  dispatchDType(p.dtype, [&](auto dtype) {
    pool.parallelFor((rows + rowsPerTask - 1) / rowsPerTask,
                     [&](int64_t task, int) {
                       stateUpdateRows<decltype(dtype)::value>(p, task * rowsPerTask,
                                                               std::min(rows, (task + 1) * rowsPerTask));
                     },
                     ThreadPool::Balance::KeepAffinity);  // the state stays in the cache of its core
  });
}

}  // namespace ss::cpu::SS_CPU_ISA
