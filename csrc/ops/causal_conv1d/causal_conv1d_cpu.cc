// causalConv1d on the CPU, compiled once per instruction set (cpu/isa.h).
//
// The whole-sequence forward and backward work on one (batch, channel) row at a time, one sequence
// (segment) of it at a time, in blocks of kBlock steps: a block's window of inputs is gathered into a
// float buffer (the state's columns, then x, then zeros), and every step is computed by the same
// vector code whatever its position, so a sequence packed with others (cuSeqlens) gives bit for bit
// what it gives alone. Tasks are runs of rows chosen from the shape only; dweight and dbias are
// summed per row, then over the batch in a fixed order, so nothing depends on the thread count.
#include <algorithm>
#include <cstring>

#include "../../common/scan_math.h"
#include "../../cpu/scratch.h"
#include "../../cpu/simd.h"
#include "../../cpu/thread_pool.h"
#include "causal_conv1d.h"

namespace ss::cpu::SS_CPU_ISA {
namespace {

using simd::kLanes;
using simd::loadu;
using simd::splat;
using simd::storeu;
using simd::Vec;

constexpr int64_t kRowsPerTask = 256;
constexpr int kMaxWidth = 8;
// Steps per block (a multiple of every kLanes): the block's buffers live on the stack.
constexpr int64_t kBlock = 512;
// About this many steps per task of the whole-sequence kernels (rows per task from L alone).
constexpr int64_t kStepsPerTask = int64_t(1) << 15;

int64_t roundUp(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// Rows [begin, end) of (batch, dim), at most kRowsPerTask of them: per batch row the index math
// once, per channel the window from its state and x (the state shifted as it is read), then the
// activation over the run of channels as vectors. kW: the width as a constant (Mamba's 4: the
// per-channel loops unroll and the window stays in registers), or 0 for any width, read at run time.
template <DType DT, int kW>
void convUpdateRows(const ConvUpdateParams &p, int64_t begin, int64_t end) {
  const int64_t D = p.dim, W = kW ? kW : p.width;
  alignas(64) float pre[kRowsPerTask + kLanes];
  for (int64_t row = begin; row < end;) {
    const int64_t b = row / D, d0 = row % D, n = std::min(D - d0, end - row);
    const int64_t slot = p.stateBatchIndices ? p.stateBatchIndices[b] : b;
    if (slot < 0) {  // padding row of a continuous batch: zeros out, state untouched
      for (int64_t i = 0; i < n; ++i) storeElement<DT>(p.out, row + i, 0.0f);
      row += n;
      continue;
    }
    for (int64_t i = 0; i < n; ++i) {
      const int64_t d = d0 + i, base = (slot * D + d) * (W - 1);
      const float *w = p.weight + d * W;
      float acc = p.bias ? p.bias[d] : 0.0f;
      // window = state ‖ x; the state drops window[0] and keeps window[1..W-1]. Its stored values
      // are already representable in the dtype, so the shift is exact.
      float prev = W > 1 ? loadElement<DT>(p.convState, base) : 0.0f;
      for (int64_t k = 0; k + 1 < W; ++k) {
        acc += w[k] * prev;
        if (k + 2 < W) {
          const float next = loadElement<DT>(p.convState, base + k + 1);
          storeElement<DT>(p.convState, base + k, next);
          prev = next;
        }
      }
      const float x = loadElement<DT>(p.x, row + i);
      acc += w[W - 1] * x;
      if (W > 1) storeElement<DT>(p.convState, base + W - 2, x);
      pre[i] = acc;
    }
    if (p.silu) {
      const int64_t nv = roundUp(n, kLanes);
      std::fill(pre + n, pre + nv, 0.0f);
      for (int64_t i = 0; i < nv; i += kLanes) storeu(pre + i, silu(loadu(pre + i)));
    }
    for (int64_t i = 0; i < n; ++i) storeElement<DT>(p.out, row + i, pre[i]);
    row += n;
  }
}

// One sequence of one channel: its steps in x, and its state row (of initialState, finalState and
// their gradients), as element offsets.
struct Segment {
  int64_t x0 = 0;      // offset of step 0 in x (and out, dout, dx)
  int64_t len = 0;     // steps
  int64_t state0 = 0;  // offset of column 0 of its state row
};

// The segments of row `row` = (b, d): the whole row, or with cuSeqlens (batch 1) one per sequence.
template <class F>
void forEachSegment(const ConvForwardParams &p, int64_t row, F &&f) {
  const int64_t d = row % p.dim, stateCols = p.width - 1;
  if (!p.cuSeqlens) {
    f(Segment{row * p.seqlen, p.seqlen, row * stateCols});
    return;
  }
  for (int64_t i = 0; i < p.sequences; ++i) {
    const int64_t begin = p.cuSeqlens[i], end = p.cuSeqlens[i + 1];
    f(Segment{d * p.seqlen + begin, end - begin, (i * p.dim + d) * stateCols});
  }
}

// buf[i] = xs[s + i] for i < n, where xs = initialState row (W - 1 columns, zeros without one),
// then the segment's x, then zeros.
template <DType DT>
void gatherWindow(const ConvForwardParams &p, const Segment &g, int64_t s, int64_t n, float *buf) {
  const int64_t W = p.width;
  int64_t i = 0;
  for (; i < n && s + i < W - 1; ++i)
    buf[i] = p.initialState ? loadElement<DT>(p.initialState, g.state0 + s + i) : 0.0f;
  const int64_t xEnd = std::min(n, W - 1 + g.len - s);
  const int64_t xFirst = g.x0 + s - (W - 1);
  for (; i < xEnd; ++i) buf[i] = loadElement<DT>(p.x, xFirst + i);
  for (; i < n; ++i) buf[i] = 0.0f;
}

// The window xs[s .. s + n) of a block: float32 x itself where the block's window lies inside x
// (every block but the first and the last), else gathered into buf. The values are the same either
// way, so the results are too.
template <DType DT>
const float *window(const ConvForwardParams &p, const Segment &g, int64_t s, int64_t n, float *buf) {
  const int64_t W = p.width;
  if constexpr (DT == DType::Float32)
    if (s >= W - 1 && s + n <= W - 1 + g.len) return static_cast<const float *>(p.x) + g.x0 + s - (W - 1);
  gatherWindow<DT>(p, g, s, n, buf);
  return buf;
}

// The weights and bias of one channel, broadcast.
struct ChannelConstants {
  Vec w[kMaxWidth];
  Vec bias;
  ChannelConstants(const ConvForwardParams &p, int64_t d) {
    for (int64_t k = 0; k < p.width; ++k) w[k] = splat(p.weight[d * p.width + k]);
    bias = splat(p.bias ? p.bias[d] : 0.0f);
  }
};

// p_t for kLanes steps from their windows xs[t .. t + W - 1]; the one formula of every step.
inline Vec preactivation(const float *xs, const ChannelConstants &c, int64_t W) {
  Vec acc = c.bias;
  for (int64_t k = 0; k < W; ++k) acc += c.w[k] * loadu(xs + k);
  return acc;
}

template <DType DT>
void forwardSegment(const ConvForwardParams &p, const ChannelConstants &c, const Segment &g) {
  const int64_t W = p.width;
  alignas(64) float buf[kBlock + kMaxWidth + kLanes];
  alignas(64) float outBuf[kBlock];
  for (int64_t s = 0; s < g.len; s += kBlock) {
    const int64_t n = std::min(kBlock, g.len - s), nv = roundUp(n, kLanes);
    const float *xs = window<DT>(p, g, s, nv + W - 1, buf);
    // float32 whole vectors go straight to out; the rest through outBuf.
    float *out = DT == DType::Float32 && n == nv ? static_cast<float *>(p.out) + g.x0 + s : outBuf;
    for (int64_t i = 0; i < nv; i += kLanes) {
      const Vec pre = preactivation(xs + i, c, W);
      storeu(out + i, p.silu ? silu(pre) : pre);
    }
    if (out == outBuf)
      for (int64_t i = 0; i < n; ++i) storeElement<DT>(p.out, g.x0 + s + i, outBuf[i]);
  }
  if (p.finalState) {  // xs[len .. len + W - 2]: stored values of this dtype, so copied exactly
    gatherWindow<DT>(p, g, g.len, W - 1, buf);
    for (int64_t j = 0; j + 1 < W; ++j) storeElement<DT>(p.finalState, g.state0 + j, buf[j]);
  }
}

// One row's sums of dp_t xs[t + k] (k < W) and of dp_t, lane-wise until the row is done.
struct RowSums {
  Vec w[kMaxWidth] = {};
  Vec bias = {};
};

// The gradients of one segment. Walks the xs indices j in [0, len + W - 1) (the state's columns,
// then x) in blocks: dxs_j = sum_k w[k] dp_{j-k} (+ dFinalState[j - len] for j >= len), which needs
// the W - 1 dp's before the block (carried over) and the block's own, recomputed from x.
template <DType DT>
void backwardSegment(const ConvBackwardParams &q, const ChannelConstants &c, const Segment &g, RowSums &sums) {
  const ConvForwardParams &p = q.fwd;
  const int64_t W = p.width, total = g.len + W - 1;
  alignas(64) float buf[kBlock + kMaxWidth + kLanes];
  alignas(64) float doutBuf[kBlock];
  alignas(64) float dpBuf[kMaxWidth + kBlock];  // dpBuf[W - 1 + i] = dp at step s + i
  alignas(64) float dxs[kBlock];
  std::fill(dpBuf, dpBuf + W - 1, 0.0f);  // steps before the segment
  float *dp = dpBuf + W - 1;
  for (int64_t s = 0; s < total; s += kBlock) {
    const int64_t n = std::min(kBlock, total - s), nv = roundUp(n, kLanes);
    const int64_t steps = std::clamp<int64_t>(g.len - s, 0, n), stepsV = roundUp(steps, kLanes);
    const float *xs = window<DT>(p, g, s, stepsV + W - 1, buf);
    const float *dout = doutBuf;
    if (DT == DType::Float32 && steps == stepsV) {
      dout = static_cast<const float *>(q.dout) + g.x0 + s;
    } else {
      for (int64_t i = 0; i < steps; ++i) doutBuf[i] = loadElement<DT>(q.dout, g.x0 + s + i);
      std::fill(doutBuf + steps, doutBuf + stepsV, 0.0f);
    }
    // dp, then its sums; a vector that runs past the segment is zeroed there first (no step, no
    // gradient) and summed after.
    const int64_t full = steps / kLanes * kLanes;
    auto dpAt = [&](int64_t i) {
      const Vec go = loadu(dout + i);
      return p.silu ? go * siluGrad(preactivation(xs + i, c, W)) : go;
    };
    auto sum = [&](int64_t i, Vec d) {
      sums.bias += d;
      for (int64_t k = 0; k < W; ++k) sums.w[k] += d * loadu(xs + i + k);
    };
    for (int64_t i = 0; i < full; i += kLanes) {
      const Vec d = dpAt(i);
      storeu(dp + i, d);
      sum(i, d);
    }
    if (full < stepsV) storeu(dp + full, dpAt(full));
    std::fill(dp + steps, dp + nv, 0.0f);
    if (full < stepsV) sum(full, loadu(dp + full));
    for (int64_t i = 0; i < nv; i += kLanes) {
      Vec acc = {};
      for (int64_t k = 0; k < W; ++k) acc += c.w[k] * loadu(dp + i - k);
      storeu(dxs + i, acc);
    }
    // xs index j = s + i: the state's columns below W - 1, x above; dFinalState from len on.
    const int64_t stateEnd = std::min(s + n, W - 1), plainBegin = std::max(s, W - 1);
    const int64_t plainEnd = std::max(plainBegin, std::min(s + n, g.len));
    auto withFinal = [&](int64_t j) {
      const float v = dxs[j - s];
      return q.dFinalState && j >= g.len ? v + loadElement<DT>(q.dFinalState, g.state0 + j - g.len) : v;
    };
    if (q.dInitialState)
      for (int64_t j = s; j < stateEnd; ++j) storeElement<DT>(q.dInitialState, g.state0 + j, withFinal(j));
    for (int64_t j = plainBegin; j < plainEnd; ++j) storeElement<DT>(q.dx, g.x0 + j - (W - 1), dxs[j - s]);
    for (int64_t j = plainEnd; j < s + n; ++j) storeElement<DT>(q.dx, g.x0 + j - (W - 1), withFinal(j));
    std::memmove(dpBuf, dpBuf + n, size_t(W - 1) * sizeof(float));  // the next block's carry
  }
}

// Rows per task of the whole-sequence kernels, from the shape alone.
int64_t rowsPerTask(const ConvForwardParams &p) {
  return std::clamp<int64_t>(kStepsPerTask / std::max<int64_t>(p.seqlen, 1), 1, kRowsPerTask);
}

}  // namespace

void convForward(const ConvForwardParams &p) {
  const int64_t rows = p.batch * p.dim, per = rowsPerTask(p);
  ThreadPool::Session pool;
  dispatchDType(p.dtype, [&](auto dtype) {
    constexpr DType DT = decltype(dtype)::value;
    pool.parallelFor((rows + per - 1) / per, [&](int64_t task, int) {
      for (int64_t row = task * per, end = std::min(rows, row + per); row < end; ++row) {
        const ChannelConstants c(p, row % p.dim);
        forEachSegment(p, row, [&](const Segment &g) { forwardSegment<DT>(p, c, g); });
      }
    });
  });
}

void convBackward(const ConvBackwardParams &q) {
  const ConvForwardParams &p = q.fwd;
  const int64_t rows = p.batch * p.dim, per = rowsPerTask(p), W = p.width;
  // Per row: W sums for dweight, then dbias's; (batch, dim, W + 1) floats, reduced over the batch.
  HostArray<float> rowSums(rows * (W + 1));
  ThreadPool::Session pool;
  dispatchDType(p.dtype, [&](auto dtype) {
    constexpr DType DT = decltype(dtype)::value;
    pool.parallelFor((rows + per - 1) / per, [&](int64_t task, int) {
      for (int64_t row = task * per, end = std::min(rows, row + per); row < end; ++row) {
        const ChannelConstants c(p, row % p.dim);
        RowSums sums;
        forEachSegment(p, row, [&](const Segment &g) { backwardSegment<DT>(q, c, g, sums); });
        float *out = rowSums.data() + row * (W + 1);
        for (int64_t k = 0; k < W; ++k) out[k] = simd::treeSum(sums.w[k]);
        out[W] = simd::treeSum(sums.bias);
      }
    });
  });
  for (int64_t d = 0; d < p.dim; ++d) {
    for (int64_t k = 0; k <= W; ++k) {
      float total = 0.0f;
      for (int64_t b = 0; b < p.batch; ++b) total += rowSums[size_t((b * p.dim + d) * (W + 1) + k)];
      if (k < W)
        q.dweight[d * W + k] = total;
      else if (q.dbias)
        q.dbias[d] = total;
    }
  }
}

void convUpdate(const ConvUpdateParams &p) {
  const int64_t rows = p.batch * p.dim;
  ThreadPool::Session pool;
  dispatchDType(p.dtype, [&](auto dtype) {
    pool.parallelFor((rows + kRowsPerTask - 1) / kRowsPerTask,
                     [&](int64_t task, int) {
                       const int64_t begin = task * kRowsPerTask, end = std::min(rows, (task + 1) * kRowsPerTask);
                       if (p.width == 4)
                         convUpdateRows<decltype(dtype)::value, 4>(p, begin, end);
                       else
                         convUpdateRows<decltype(dtype)::value, 0>(p, begin, end);
                     },
                     ThreadPool::Balance::KeepAffinity);  // the state stays in the cache of its core
  });
}

}  // namespace ss::cpu::SS_CPU_ISA
