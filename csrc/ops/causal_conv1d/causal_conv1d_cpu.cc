// causalConv1d on the CPU, compiled once per instruction set (cpu/isa.h).
#include <algorithm>

#include "../../common/scan_math.h"
#include "../../cpu/thread_pool.h"
#include "causal_conv1d.h"

namespace ss::cpu::SS_CPU_ISA {
namespace {

constexpr int64_t kRowsPerTask = 256;
constexpr int kMaxWidth = 8;

template <DType DT>
void convUpdateRows(const ConvUpdateParams &p, int64_t begin, int64_t end) {
  const int64_t D = p.dim, W = p.width;
  for (int64_t row = begin; row < end; ++row) {  // row = (b, d) of (batch, dim)
    const int64_t b = row / D, d = row % D;
    const int64_t slot = p.stateBatchIndices ? p.stateBatchIndices[b] : b;
    if (slot < 0) {  // padding row of a continuous batch: zeros out, state untouched
      storeElement<DT>(p.out, row, 0.0f);
      continue;
    }
    const int64_t base = (slot * D + d) * (W - 1);
    float window[kMaxWidth];
    for (int64_t k = 0; k + 1 < W; ++k) window[k] = loadElement<DT>(p.convState, base + k);
    window[W - 1] = loadElement<DT>(p.x, row);
    float acc = p.bias ? p.bias[d] : 0.0f;
    for (int64_t k = 0; k < W; ++k) acc += p.weight[d * W + k] * window[k];
    storeElement<DT>(p.out, row, p.silu ? silu(acc) : acc);
    // The state keeps x's dtype; its stored values are already representable, so this is exact.
    for (int64_t k = 0; k + 1 < W; ++k) storeElement<DT>(p.convState, base + k, window[k + 1]);
  }
}

}  // namespace

void convUpdate(const ConvUpdateParams &p) {
  const int64_t rows = p.batch * p.dim;
  ThreadPool::Session pool;
  dispatchDType(p.dtype, [&](auto dtype) {
    pool.parallelFor((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
      convUpdateRows<decltype(dtype)::value>(p, task * kRowsPerTask, std::min(rows, (task + 1) * kRowsPerTask));
    });
  });
}

}  // namespace ss::cpu::SS_CPU_ISA
