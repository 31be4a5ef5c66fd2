// selectiveStateUpdate on the CPU, compiled once per instruction set (cpu/isa.h): rows of
// (batch, H, P) in tasks of kRowsPerTask on the thread pool, each row's N states vectorised.
#include <algorithm>

#include "../../common/scan_math.h"
#include "../../cpu/simd.h"
#include "../../cpu/thread_pool.h"
#include "state_update.h"

namespace ss::cpu::SS_CPU_ISA {
namespace {

using simd::kLanes;
using simd::splat;
using simd::Vec;

constexpr int64_t kRowsPerTask = 64;

// Loads up to kLanes consecutive elements as floats; lanes past `count` are zero.
template <DType DT>
Vec loadVec(const void *base, int64_t i, int64_t count) {
  Vec v = {};
  if (DT == DType::Float32 && count == kLanes) return simd::loadu(static_cast<const float *>(base) + i);
  for (int64_t j = 0; j < count; ++j) v[j] = loadElement<DT>(base, i + j);
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
      storeElement<DT>(p.y, row, 0.0f);
      continue;
    }
    const float x = loadElement<DT>(p.x, row);
    const float dtRaw = loadElement<DT>(p.dt, p.scalarPerHead ? i * H + h : row);
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
    if (p.z) y *= silu(loadElement<DT>(p.z, row));
    storeElement<DT>(p.y, row, y);
  }
}

}  // namespace

void stateUpdate(const StateUpdateParams &p) {
  const int64_t rows = p.batch * p.heads * p.headDim;
  ThreadPool::Session pool;
  dispatchDType(p.dtype, [&](auto dtype) {
    pool.parallelFor((rows + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task, int) {
      stateUpdateRows<decltype(dtype)::value>(p, task * kRowsPerTask, std::min(rows, (task + 1) * kRowsPerTask));
    });
  });
}

}  // namespace ss::cpu::SS_CPU_ISA
