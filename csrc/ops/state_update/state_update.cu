// One step of the recurrence for decoding (selectiveStateUpdate) on the GPU.
//
// Kernel design (stateUpdateKernel<DT>): a row is one (batch row i, head h, position p) with its N
// state elements contiguous (state is (slots, H, P, N)). A segment of lanesPerRow =
// min(32, next power of two >= N) consecutive lanes owns one row, lane s of the segment the
// elements n = s, s + lanesPerRow, ...: a warp's accesses to state, B and C are consecutive
// addresses, and each state element is read and written exactly once. y sums the segment's
// partials with a butterfly confined to the segment. A grid-stride loop over rows (batch * H * P
// is unbounded). All three forms of docs/API.md are the heads form (state_update.h): A, dt and dtBias
// per head are broadcast over P (and N) when scalarPerHead.
#include <algorithm>

#include "../../common/scan_math.h"
#include "../../cuda/kernel_common.cuh"
#include "state_update.h"

namespace ss::cuda {
namespace {

constexpr int kStateUpdateThreads = 256;

template <DType DT>
__global__ void __launch_bounds__(kStateUpdateThreads)
    stateUpdateKernel(const StateUpdateParams p, int lanesPerRowLog2) {
  const int lanesPerRow = 1 << lanesPerRowLog2;
  const int rowsPerWarp = kWarpSize >> lanesPerRowLog2;
  const int lane = laneIndex();
  const int segmentLane = lane & (lanesPerRow - 1);
  const int64_t H = p.heads, P = p.headDim;
  const int N = int(p.dstate);
  const int64_t rows = p.batch * H * P, headsPerGroup = H / p.groups;
  const int64_t warpsPerBlock = kStateUpdateThreads / kWarpSize;
  const int64_t rowStride = int64_t(gridDim.x) * warpsPerBlock * rowsPerWarp;

  // The loop bound is the warp's first row, so every lane of a warp runs the same iterations.
  for (int64_t warpRow = (int64_t(blockIdx.x) * warpsPerBlock + warpIndex()) * rowsPerWarp; warpRow < rows;
       warpRow += rowStride) {
    const int64_t row = warpRow + (lane >> lanesPerRowLog2);  // (i, h, pp) of (batch, H, P)
    const bool inRange = row < rows;
    const int64_t i = row / (H * P), h = (row / P) % H, pp = row % P;
    const int64_t slot = !inRange ? -1 : p.stateBatchIndices ? int64_t(p.stateBatchIndices[i]) : i;
    const bool live = slot >= 0;  // a negative slot is a padding row: y = 0, state untouched

    float x = 0.0f, partial = 0.0f;
    if (live) {
      x = loadElement<DT>(p.x, row);
      const float dtRaw = loadElement<DT>(p.dt, p.scalarPerHead ? i * H + h : row);
      const float bias = p.dtBias ? p.dtBias[p.scalarPerHead ? h : h * P + pp] : 0.0f;
      const float dt = deltaToDt(dtRaw, bias, p.dtSoftplus);
      const float dtx = dt * x;
      const int64_t bc = (i * p.groups + h / headsPerGroup) * N;  // B, C: (batch, G, N)
      float *const state = p.state + ((slot * H + h) * P + pp) * N;
      const float *const A = p.scalarPerHead ? nullptr : p.A + (h * P + pp) * N;
      const float aHead = p.scalarPerHead ? exp2f(dt * p.A[h] * kLog2e) : 0.0f;
      for (int n = segmentLane; n < N; n += lanesPerRow) {
        const float a = A ? exp2f(dt * A[n] * kLog2e) : aHead;
        const float updated = stateStep(a, state[n], dtx, loadElement<DT>(p.B, bc + n));
        state[n] = updated;
        partial += loadElement<DT>(p.C, bc + n) * updated;
      }
    }
    for (int offset = lanesPerRow / 2; offset > 0; offset /= 2) partial += __shfl_xor_sync(kFullMask, partial, offset);

    if (inRange && segmentLane == 0) {
      float y = 0.0f;
      if (live) {
        y = partial;
        if (p.D) y += p.D[h * p.dStrideHead + pp * p.dStrideP] * x;
        if (p.z) y *= silu(loadElement<DT>(p.z, row));
      }
      static_cast<typename Element<DT>::Storage *>(p.y)[row] = Element<DT>::store(y);
    }
  }
}

}  // namespace

gpu::Status stateUpdate(const StateUpdateParams &p, gpu::Stream stream) {
  if (p.batch < 0 || p.heads < 0 || p.headDim < 0 || p.dstate < 0) return cudaErrorInvalidValue;
  const int64_t rows = p.batch * p.heads * p.headDim;
  if (rows == 0) return cudaSuccess;
  if (p.dstate == 0 || p.dstate > (int64_t(1) << 30) || p.groups <= 0 || p.heads % p.groups != 0)
    return cudaErrorInvalidValue;

  int lanesPerRowLog2 = 0;
  while (lanesPerRowLog2 < 5 && (int64_t(1) << lanesPerRowLog2) < p.dstate) ++lanesPerRowLog2;
  const int64_t rowsPerBlock = (kStateUpdateThreads / kWarpSize) * (kWarpSize >> lanesPerRowLog2);
  return dispatchDType(p.dtype, [&](auto dtype) {
    stateUpdateKernel<decltype(dtype)::value>
        <<<gridBlocks(ceilDiv(rows, rowsPerBlock)), kStateUpdateThreads, 0, stream>>>(p, lanesPerRowLog2);
    return cudaGetLastError();
  });
}

}  // namespace ss::cuda
